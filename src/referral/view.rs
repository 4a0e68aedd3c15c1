//! What the referring police agency is shown of a referral, on top of the MOU's field plan.
//!
//! Police see SUBMITTED, RECEIVED, CLOSED and WITHDRAWN always. The finer states reveal
//! whether and how a person is engaging with mental-health services, so they are shown only
//! under an active consent that lets the receiving (mental-health) agency tell the police
//! agency the referral's status for the stated purpose; otherwise the status is coarsened
//! ([`police_view`]: `IN_PROGRESS`, and REJECTED as CLOSED).
//!
//! The clinician contact goes with it: it is set when a clinician is assigned, so its presence
//! alone tells that the referral reached ASSIGNED (and, on a CLOSED referral, that it was not
//! rejected). Without that consent it is withheld, whatever the state; it is not replaced by
//! the agency's crisis desk, which would only be another way to tell the two cases apart, and
//! which the agency publishes to the police through its own channels anyway.
//!
//! Pure: the view is known before any value is read, so the log entry records it (the status
//! as `generalize(referral-status)`, the contact among the fields withheld).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ReferralState, police_view};
use crate::domain::{Consent, ConsentQuery, PartnerId, PartnerKind, Purpose, SubjectRef};
use crate::policy::{PolicySet, Transform};

/// The record kind of referrals.
pub const REFERRAL_KIND: &str = "referral";
/// The referral's status field.
pub const STATUS_FIELD: &str = "status";
/// The referral's clinician contact field.
pub const CLINICIAN_CONTACT_FIELD: &str = "clinician_contact";
/// The transform recorded for a referral status coarsened for police.
pub const REFERRAL_STATUS_VIEW: &str = "generalize(referral-status)";
/// How a field the view withholds is described (golden cases, explanations; the log counts it
/// among the fields withheld).
pub const WITHHELD_BY_VIEW: &str = "omit(referral-status)";

/// Who reads which record, for what.
#[derive(Debug, Clone, Copy)]
pub struct ViewRequest<'a> {
    /// The reader's partner.
    pub recipient: &'a PartnerId,
    /// Its kind.
    pub recipient_kind: PartnerKind,
    /// The stated purpose.
    pub purpose: &'a Purpose,
    /// The record kind.
    pub kind: &'a str,
    /// The record's subject.
    pub subject: &'a SubjectRef,
}

/// Whether and how the police status view applies to one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusView {
    /// Not a referral read by police: the plan stands as decided.
    None,
    /// Police, under a consent naming them: every state is shown, and the contact.
    Consented,
    /// Police, without such a consent: the status coarsened, the contact withheld.
    Coarse,
}

impl StatusView {
    /// The view for `req`, given the subject's consents at `now`.
    pub fn for_request(
        policy: &PolicySet,
        req: &ViewRequest<'_>,
        consents: &[Consent],
        now: DateTime<Utc>,
    ) -> Self {
        if req.kind != REFERRAL_KIND || req.recipient_kind != PartnerKind::Police {
            return Self::None;
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
                            subject: req.subject,
                            discloser: &d.id,
                            recipient: req.recipient,
                            purpose: req.purpose,
                            kind: REFERRAL_KIND,
                        })
                    })
        });
        if names_police {
            Self::Consented
        } else {
            Self::Coarse
        }
    }

    /// Whether the view withholds `field` although the plan would disclose it.
    pub fn withholds(self, field: &str) -> bool {
        self == Self::Coarse && field == CLINICIAN_CONTACT_FIELD
    }

    /// The transform recorded for a disclosed `field` the plan transforms with `t`.
    pub fn transform_label(self, field: &str, t: Transform) -> String {
        if self == Self::Coarse && field == STATUS_FIELD {
            REFERRAL_STATUS_VIEW.to_owned()
        } else {
            t.describe()
        }
    }

    /// How the view changes a plan: each field it changes, with what it makes of it
    /// ([`REFERRAL_STATUS_VIEW`] or [`WITHHELD_BY_VIEW`]). Fields the plan omits are not
    /// listed.
    pub fn changes<'a>(
        self,
        plan: impl IntoIterator<Item = (&'a str, Transform)>,
    ) -> BTreeMap<String, String> {
        plan.into_iter()
            .filter(|(_, t)| *t != Transform::Omit)
            .filter_map(|(field, t)| {
                if self.withholds(field) {
                    Some((field.to_owned(), WITHHELD_BY_VIEW.to_owned()))
                } else {
                    let label = self.transform_label(field, t);
                    (label != t.describe()).then(|| (field.to_owned(), label))
                }
            })
            .collect()
    }

    /// Applies the view to the redacted fields.
    pub fn apply(self, fields: &mut BTreeMap<String, Value>) {
        if self == Self::None {
            return;
        }
        let consented = self == Self::Consented;
        if let Some(v) = fields.get_mut(STATUS_FIELD) {
            let shown = v
                .as_str()
                .and_then(ReferralState::parse)
                .map(|s| police_view(s, consented))
                // An unparseable stored state is never shown as such to police.
                .unwrap_or("IN_PROGRESS");
            *v = Value::String(shown.to_owned());
        }
        fields.retain(|name, _| !self.withholds(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> BTreeMap<String, Value> {
        serde_json::from_value(json!({
            "referral_id": "R-1",
            "status": "ASSIGNED",
            "clinician_contact": "Dr. Example, desk 4",
        }))
        .unwrap()
    }

    #[test]
    fn without_consent_the_status_is_coarse_and_the_contact_withheld() {
        let mut f = fields();
        StatusView::Coarse.apply(&mut f);
        assert_eq!(f["status"], "IN_PROGRESS");
        assert!(!f.contains_key(CLINICIAN_CONTACT_FIELD), "{f:?}");
        assert_eq!(f["referral_id"], "R-1");
        // Also on a closed referral: the contact would tell a rejection from an outcome.
        let mut closed = fields();
        closed.insert("status".into(), json!("CLOSED"));
        StatusView::Coarse.apply(&mut closed);
        assert_eq!(closed["status"], "CLOSED");
        assert!(!closed.contains_key(CLINICIAN_CONTACT_FIELD));
    }

    #[test]
    fn under_consent_and_for_others_nothing_is_withheld() {
        let mut f = fields();
        StatusView::Consented.apply(&mut f);
        assert_eq!(f, fields());
        let mut f = fields();
        StatusView::None.apply(&mut f);
        assert_eq!(f, fields());
    }

    #[test]
    fn the_changes_name_what_the_log_and_the_golden_cases_record() {
        let plan = [
            ("referral_id", Transform::Reveal),
            ("status", Transform::Reveal),
            ("clinician_contact", Transform::Reveal),
            ("status_note", Transform::Omit),
        ];
        let c = StatusView::Coarse.changes(plan);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c["status"], REFERRAL_STATUS_VIEW);
        assert_eq!(c["clinician_contact"], WITHHELD_BY_VIEW);
        assert!(StatusView::Consented.changes(plan).is_empty());
        assert!(StatusView::None.changes(plan).is_empty());
        assert!(StatusView::Coarse.withholds("clinician_contact"));
        assert!(!StatusView::Consented.withholds("clinician_contact"));
    }
}
