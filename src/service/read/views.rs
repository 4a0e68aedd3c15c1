//! Views that depend on the record kind's workflow, applied after the MOU plan.
//!
//! The referral status view ([`crate::referral::view`]): police see SUBMITTED, RECEIVED, CLOSED
//! and WITHDRAWN always; the finer states and the clinician contact only under a consent naming
//! the police agency as recipient (otherwise the status shows as `IN_PROGRESS`, REJECTED as
//! `CLOSED`, and the contact is withheld). Whether the view coarsens is known before any value
//! is read, so the log entry records exactly what leaves: the status as
//! `generalize(referral-status)`, the contact among the fields withheld.

use chrono::{DateTime, Utc};

use super::Asker;
use crate::domain::{Consent, SubjectRef};
use crate::policy::PolicySet;
pub use crate::referral::view::{REFERRAL_KIND, REFERRAL_STATUS_VIEW};
use crate::referral::view::{StatusView, ViewRequest};
use crate::vault::DecryptedRecord;

/// The view for one read of `rec` by `asker`.
pub(super) fn for_record(
    policy: &PolicySet,
    asker: &Asker<'_>,
    rec: &DecryptedRecord,
    consents: &[Consent],
    subject: &SubjectRef,
    now: DateTime<Utc>,
) -> StatusView {
    let p = asker.caller.principal;
    StatusView::for_request(
        policy,
        &ViewRequest {
            recipient: &p.partner,
            recipient_kind: p.partner_kind,
            purpose: asker.purpose,
            kind: rec.kind.as_str(),
            subject,
        },
        consents,
        now,
    )
}
