//! Views that depend on the record kind's workflow, applied after the MOU plan.
//!
//! The referral status view: police see SUBMITTED, RECEIVED, CLOSED and WITHDRAWN always; the
//! finer states only under a consent naming the police agency as recipient (otherwise they show
//! as `IN_PROGRESS`, and REJECTED as `CLOSED`; see [`crate::referral::police_view`]). Whether
//! the view coarsens is known before any value is read, so the log entry records it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Asker;
use crate::domain::{Consent, ConsentQuery, PartnerKind, SubjectRef};
use crate::policy::{PolicySet, Transform};
use crate::referral::{ReferralState, police_view};
use crate::vault::DecryptedRecord;

/// The record kind of referrals.
pub const REFERRAL_KIND: &str = "referral";
/// The transform recorded in the log for a referral status coarsened for police.
pub const REFERRAL_STATUS_VIEW: &str = "generalize(referral-status)";
const STATUS_FIELD: &str = "status";

pub(super) struct View {
    /// `Some(consent_names_police)` when the police referral-status view applies.
    police_status: Option<bool>,
}

impl View {
    pub(super) fn for_record(
        policy: &PolicySet,
        asker: &Asker<'_>,
        rec: &DecryptedRecord,
        consents: &[Consent],
        subject: &SubjectRef,
        now: DateTime<Utc>,
    ) -> Self {
        let p = asker.caller.principal;
        if rec.kind.as_str() != REFERRAL_KIND || p.partner_kind != PartnerKind::Police {
            return Self {
                police_status: None,
            };
        }
        // The status is the receiving (mental-health) agency's information: a consent counts
        // if it lets a mental-health partner disclose the referral's status to this caller for
        // this purpose, by the same rules a decision applies.
        let labels = policy
            .kinds
            .get(REFERRAL_KIND)
            .and_then(|k| k.field(STATUS_FIELD))
            .map(|f| f.labels.clone())
            .unwrap_or_default();
        let names_police = consents.iter().any(|c| {
            c.is_active(now)
                && c.covers_field(REFERRAL_KIND, STATUS_FIELD, &labels)
                && policy
                    .partners
                    .iter()
                    .filter(|d| d.kind == PartnerKind::MentalHealth)
                    .any(|d| {
                        c.covers(&ConsentQuery {
                            subject,
                            discloser: &d.id,
                            recipient: &p.partner,
                            purpose: asker.purpose,
                            kind: REFERRAL_KIND,
                        })
                    })
        });
        Self {
            police_status: Some(names_police),
        }
    }

    /// The transform recorded for `field` in the log.
    pub(super) fn transform_label(&self, field: &str, t: Transform) -> String {
        match self.police_status {
            Some(false) if field == STATUS_FIELD => REFERRAL_STATUS_VIEW.to_owned(),
            _ => t.describe(),
        }
    }

    /// Applies the view to the redacted fields.
    pub(super) fn apply(&self, fields: &mut BTreeMap<String, Value>) {
        let Some(names_police) = self.police_status else {
            return;
        };
        if let Some(v) = fields.get_mut(STATUS_FIELD) {
            let shown = v
                .as_str()
                .and_then(ReferralState::parse)
                .map(|s| police_view(s, names_police))
                // An unparseable stored state is never shown as such to police.
                .unwrap_or("IN_PROGRESS");
            *v = Value::String(shown.to_owned());
        }
    }
}
