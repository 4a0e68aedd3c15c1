//! The two other directives about one person that the decision reads besides consents: agreed
//! restrictions (HIPAA 45 CFR 164.522(a), 42 CFR 2.26) and court orders authorizing the use and
//! disclosure of Part 2 records (42 CFR part 2, subpart E: 2.64 and 2.65).
//!
//! Like [`Consent`](super::Consent), each is plain data with pure queries; the `consent` module
//! validates them when they are recorded and keeps them sealed at rest, and the decision only
//! ever sees these types. Security role: a [`Restriction`] in force removes the fields it
//! covers from every flow it names, whatever an MOU rule or a consent says; a [`CourtOrder`] in
//! force is the only way a Part 2 field reaches a recipient for a purpose the Part 2 limits
//! otherwise refuse (`investigation`, `prosecution`), and only for the recipient, purposes,
//! disclosers and fields it names, while it is in force.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Label, PartnerId, Purpose, SubjectRef};

/// A restriction an agency agreed to with a person (HIPAA 164.522(a)(1)(iii): a covered entity
/// that agrees to a restriction may not use or disclose the information in violation of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    /// Its id, quoted in decision reasons and the disclosure log.
    pub id: String,
    /// The person it is about.
    pub subject: SubjectRef,
    /// The agency that agreed to it: the restricted discloser.
    pub discloser: PartnerId,
    /// Recipients it restricts; empty: every recipient.
    #[serde(default)]
    pub recipients: BTreeSet<PartnerId>,
    /// Purposes it restricts; empty: every purpose.
    #[serde(default)]
    pub purposes: BTreeSet<Purpose>,
    /// What information it covers.
    pub scope: RestrictionScope,
    /// From when it holds.
    pub valid_from: DateTime<Utc>,
    /// When it ends (exclusive); `None`: until it is terminated.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// When it was terminated (HIPAA 164.522(a)(2)), if it was.
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
}

/// What a restriction covers: the fields of the listed kinds (all kinds when none is listed)
/// that carry one of the listed categories (every field of those kinds when no category is
/// listed), plus fields named as `kind.field`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictionScope {
    /// Record kinds, e.g. `safety-plan`.
    #[serde(default)]
    pub kinds: BTreeSet<String>,
    /// Sensitivity categories, e.g. `sud`, `clinical`.
    #[serde(default)]
    pub categories: BTreeSet<Label>,
    /// Named fields as `kind.field`.
    #[serde(default)]
    pub fields: BTreeSet<String>,
}

impl RestrictionScope {
    /// Whether the scope names nothing at all.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.categories.is_empty() && self.fields.is_empty()
    }

    /// Whether the scope covers the field `kind.field` with `labels`.
    pub fn covers_field(&self, kind: &str, field: &str, labels: &BTreeSet<Label>) -> bool {
        if self
            .fields
            .iter()
            .any(|f| f.split_once('.') == Some((kind, field)))
        {
            return true;
        }
        if self.kinds.is_empty() && self.categories.is_empty() {
            return false;
        }
        let kind_ok = self.kinds.is_empty() || self.kinds.contains(kind);
        let category_ok =
            self.categories.is_empty() || labels.iter().any(|l| self.categories.contains(l));
        kind_ok && category_ok
    }
}

impl Restriction {
    /// Whether it is in force at `now`: started, not ended, not terminated.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.valid_from <= now
            && self.until.is_none_or(|u| now < u)
            && self.ended_at.is_none_or(|e| now < e)
    }

    /// Whether it restricts this flow (its subject, discloser, recipient and purpose). Field
    /// coverage is [`RestrictionScope::covers_field`].
    pub fn applies(
        &self,
        subject: &SubjectRef,
        discloser: &PartnerId,
        recipient: &PartnerId,
        purpose: &Purpose,
    ) -> bool {
        &self.subject == subject
            && &self.discloser == discloser
            && (self.recipients.is_empty() || self.recipients.contains(recipient))
            && (self.purposes.is_empty() || self.purposes.contains(purpose))
    }
}

/// A court order authorizing the use and disclosure of Part 2 records (42 CFR 2.64 for
/// noncriminal purposes, 2.65 to investigate or prosecute the patient). An order authorizes;
/// it does not compel (42 CFR 2.61): it is recorded here once the holding program will
/// disclose under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourtOrder {
    /// Its id, quoted in decision reasons and as the legal basis in the disclosure log.
    pub id: String,
    /// The person it is about.
    pub subject: SubjectRef,
    /// The programs whose records it authorizes them to disclose.
    pub disclosers: BTreeSet<PartnerId>,
    /// The one recipient it names.
    pub recipient: PartnerId,
    /// The purposes it authorizes.
    pub purposes: BTreeSet<Purpose>,
    /// The Part 2 fields it authorizes, as `kind.field`.
    pub fields: BTreeSet<String>,
    /// From when it is in force.
    pub valid_from: DateTime<Utc>,
    /// When it ends (exclusive).
    pub until: DateTime<Utc>,
    /// When it was vacated or withdrawn, if it was.
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
}

impl CourtOrder {
    /// Whether it is in force at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.valid_from <= now && now < self.until && self.ended_at.is_none_or(|e| now < e)
    }

    /// Whether it authorizes `kind.field` to flow from `discloser` to `recipient` for
    /// `purpose` about `subject`.
    pub fn authorizes(
        &self,
        subject: &SubjectRef,
        discloser: &PartnerId,
        recipient: &PartnerId,
        purpose: &Purpose,
        kind: &str,
        field: &str,
    ) -> bool {
        &self.subject == subject
            && self.disclosers.contains(discloser)
            && &self.recipient == recipient
            && self.purposes.contains(purpose)
            && self
                .fields
                .iter()
                .any(|f| f.split_once('.') == Some((kind, field)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn restriction() -> Restriction {
        Restriction {
            id: "r-1".into(),
            subject: "subj-1".parse().unwrap(),
            discloser: "county-mh".parse().unwrap(),
            recipients: ["metro-pd".parse().unwrap()].into(),
            purposes: BTreeSet::new(),
            scope: RestrictionScope {
                kinds: ["safety-plan".into()].into(),
                categories: [Label::Contact].into(),
                fields: BTreeSet::new(),
            },
            valid_from: at("2026-01-01T00:00:00Z"),
            until: None,
            ended_at: None,
        }
    }

    #[test]
    fn a_restriction_covers_its_categories_within_its_kinds() {
        let r = restriction();
        let contact: BTreeSet<Label> = [Label::Contact].into();
        let safety: BTreeSet<Label> = [Label::Safety].into();
        assert!(
            r.scope
                .covers_field("safety-plan", "crisis_contacts", &contact)
        );
        assert!(!r.scope.covers_field("safety-plan", "means_safety", &safety));
        assert!(!r.scope.covers_field("referral", "subject_phone", &contact));
        let mut whole = r.scope.clone();
        whole.categories.clear();
        assert!(whole.covers_field("safety-plan", "means_safety", &safety));
        let named = RestrictionScope {
            fields: ["safety-plan.means_safety".into()].into(),
            ..RestrictionScope::default()
        };
        assert!(named.covers_field("safety-plan", "means_safety", &safety));
        assert!(!named.covers_field("safety-plan", "crisis_contacts", &contact));
    }

    #[test]
    fn a_restriction_applies_to_its_flow_while_in_force() {
        let mut r = restriction();
        let s: SubjectRef = "subj-1".parse().unwrap();
        let mh: PartnerId = "county-mh".parse().unwrap();
        let pd: PartnerId = "metro-pd".parse().unwrap();
        let p: Purpose = "crisis-response".parse().unwrap();
        assert!(r.applies(&s, &mh, &pd, &p));
        assert!(!r.applies(&s, &mh, &mh, &p));
        assert!(r.is_active(at("2026-06-01T00:00:00Z")));
        r.ended_at = Some(at("2026-03-01T00:00:00Z"));
        assert!(!r.is_active(at("2026-06-01T00:00:00Z")));
        assert!(!r.is_active(at("2025-06-01T00:00:00Z")));
    }

    #[test]
    fn an_order_authorizes_exactly_what_it_names_while_in_force() {
        let o = CourtOrder {
            id: "co-1".into(),
            subject: "subj-1".parse().unwrap(),
            disclosers: ["county-mh".parse().unwrap()].into(),
            recipient: "metro-pd".parse().unwrap(),
            purposes: ["investigation".parse().unwrap()].into(),
            fields: ["safety-plan.substance_use_history".into()].into(),
            valid_from: at("2026-01-01T00:00:00Z"),
            until: at("2026-04-01T00:00:00Z"),
            ended_at: None,
        };
        let s: SubjectRef = "subj-1".parse().unwrap();
        let mh: PartnerId = "county-mh".parse().unwrap();
        let pd: PartnerId = "metro-pd".parse().unwrap();
        let inv: Purpose = "investigation".parse().unwrap();
        let pro: Purpose = "prosecution".parse().unwrap();
        let f = "substance_use_history";
        assert!(o.authorizes(&s, &mh, &pd, &inv, "safety-plan", f));
        assert!(!o.authorizes(&s, &mh, &pd, &pro, "safety-plan", f));
        assert!(!o.authorizes(&s, &mh, &mh, &inv, "safety-plan", f));
        assert!(!o.authorizes(&s, &mh, &pd, &inv, "safety-plan", "diagnoses"));
        assert!(o.is_active(at("2026-02-01T00:00:00Z")));
        assert!(!o.is_active(at("2026-04-01T00:00:00Z")));
    }
}
