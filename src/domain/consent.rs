//! The consent model the decision reads: who may disclose what to whom, for which purposes,
//! until when, and whether it was revoked.
//!
//! A [`Consent`] is plain data with pure queries. The `consent` module validates directives as
//! partners submit them and keeps them sealed at rest; the decision only ever sees this type.
//! Security role: `decide` only counts a consent that [`Consent::is_active`] at the decision
//! time and that [`Consent::covers`] the exact flow; psychotherapy notes are covered only when
//! a consent names the field itself ([`Consent::names_field`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::{IdError, Label, PartnerId, Purpose};

/// A reference to the person a record is about: an opaque id assigned by the gateway (never a
/// name). 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SubjectRef(String);

impl SubjectRef {
    /// The reference as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SubjectRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(IdError {
                what: "subject reference",
                value: s.chars().take(64).collect(),
                rule: "use 1 to 128 visible ASCII characters without spaces",
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for SubjectRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What information a consent covers. A field is covered when its record kind is listed in
/// `kinds`, or one of its labels is in `categories`, or it is named in `fields` as
/// `kind.field`. Psychotherapy notes are only ever covered through `fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentScope {
    /// Whole record kinds, e.g. `safety-plan`.
    #[serde(default)]
    pub kinds: BTreeSet<String>,
    /// Sensitivity categories, e.g. `sud` (the person consents to that category of
    /// information within the listed kinds, or within any kind when `kinds` is empty).
    #[serde(default)]
    pub categories: BTreeSet<Label>,
    /// Named fields as `kind.field`, e.g. `safety-plan.deescalation_preferences`.
    #[serde(default)]
    pub fields: BTreeSet<String>,
}

/// One consent directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Its id, quoted in decision reasons and the disclosure log.
    pub id: String,
    /// The person it is about.
    pub subject: SubjectRef,
    /// Partners allowed to disclose (the record holders).
    pub disclosers: BTreeSet<PartnerId>,
    /// Partners allowed to receive, by name.
    pub recipients: BTreeSet<PartnerId>,
    /// Purposes of use it allows.
    pub purposes: BTreeSet<Purpose>,
    /// What information it covers.
    pub scope: ConsentScope,
    /// From when it is valid.
    pub valid_from: DateTime<Utc>,
    /// When it expires (exclusive). `None` when the consent ends on an event instead
    /// ([`Consent::expiry_event`], e.g. "end of the treatment episode"): the gateway cannot
    /// observe such an event, so the consent stays in force until it is revoked, which is how
    /// the event is recorded. The registry refuses a consent that states neither.
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// The event on which the consent expires, as written in the signed form.
    #[serde(default)]
    pub expiry_event: Option<String>,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The flow a consent is asked about.
#[derive(Debug, Clone, Copy)]
pub struct ConsentQuery<'a> {
    /// The person the record is about.
    pub subject: &'a SubjectRef,
    /// The partner holding the record.
    pub discloser: &'a PartnerId,
    /// The partner asking.
    pub recipient: &'a PartnerId,
    /// The stated purpose.
    pub purpose: &'a Purpose,
    /// The record kind.
    pub kind: &'a str,
}

impl Consent {
    /// Whether the consent is in force at `now`: started, not expired (a consent with an
    /// expiration event and no date has no end date), not revoked.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.valid_from <= now
            && self.expires.is_none_or(|expires| now < expires)
            && self.revoked_at.is_none_or(|revoked| now < revoked)
    }

    /// Whether the consent allows this flow at all (subject, discloser, recipient, purpose), and
    /// names this kind somewhere in its scope. Field coverage is [`Consent::covers_field`].
    pub fn covers(&self, q: &ConsentQuery<'_>) -> bool {
        &self.subject == q.subject
            && self.disclosers.contains(q.discloser)
            && self.recipients.contains(q.recipient)
            && self.purposes.contains(q.purpose)
            && self.mentions_kind(q.kind)
    }

    fn mentions_kind(&self, kind: &str) -> bool {
        let s = &self.scope;
        s.kinds.contains(kind)
            || (s.kinds.is_empty() && !s.categories.is_empty())
            || s.fields
                .iter()
                .any(|f| f.split_once('.').is_some_and(|(k, _)| k == kind))
    }

    /// Whether the consent names `kind.field` explicitly.
    pub fn names_field(&self, kind: &str, field: &str) -> bool {
        self.scope
            .fields
            .iter()
            .any(|f| f.split_once('.') == Some((kind, field)))
    }

    /// Whether the consent covers one field with these labels. Psychotherapy notes need the
    /// field named; every other field is covered by its kind, a category or its name. A field
    /// labelled `sud` (42 CFR Part 2) needs the kind together with the `sud` category, or its
    /// name: Part 2 requires the information to be described specifically.
    pub fn covers_field(&self, kind: &str, field: &str, labels: &BTreeSet<Label>) -> bool {
        if self.names_field(kind, field) {
            return true;
        }
        if labels.contains(&Label::PsychotherapyNotes) {
            return false;
        }
        let s = &self.scope;
        let kind_ok = s.kinds.is_empty() || s.kinds.contains(kind);
        if labels.contains(&Label::Sud) {
            return kind_ok && s.categories.contains(&Label::Sud);
        }
        s.kinds.contains(kind) || (kind_ok && labels.iter().any(|l| s.categories.contains(l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn consent() -> Consent {
        Consent {
            id: "c-1".into(),
            subject: "subj-1".parse().unwrap(),
            disclosers: ["county-mh".parse().unwrap()].into(),
            recipients: ["metro-pd".parse().unwrap()].into(),
            purposes: ["crisis-response".parse().unwrap()].into(),
            scope: ConsentScope {
                kinds: BTreeSet::new(),
                categories: BTreeSet::new(),
                fields: ["safety-plan.crisis_contacts".into()].into(),
            },
            valid_from: at("2026-01-01T00:00:00Z"),
            expires: Some(at("2027-01-01T00:00:00Z")),
            expiry_event: None,
            revoked_at: None,
        }
    }

    #[test]
    fn activity_follows_the_dates_and_revocation() {
        let mut c = consent();
        assert!(!c.is_active(at("2025-12-31T23:59:59Z")));
        assert!(c.is_active(at("2026-06-01T00:00:00Z")));
        assert!(!c.is_active(at("2027-01-01T00:00:00Z")));
        c.revoked_at = Some(at("2026-03-01T00:00:00Z"));
        assert!(c.is_active(at("2026-02-28T00:00:00Z")));
        assert!(!c.is_active(at("2026-03-01T00:00:00Z")));
    }

    #[test]
    fn an_event_expiry_is_in_force_until_revoked() {
        let mut c = consent();
        c.expires = None;
        c.expiry_event = Some("end of the treatment episode".into());
        assert!(!c.is_active(at("2025-12-31T23:59:59Z")));
        assert!(c.is_active(at("2026-06-01T00:00:00Z")));
        assert!(c.is_active(at("2040-01-01T00:00:00Z")));
        c.revoked_at = Some(at("2030-01-01T00:00:00Z"));
        assert!(c.is_active(at("2029-12-31T23:59:59Z")));
        assert!(!c.is_active(at("2030-01-01T00:00:00Z")));
    }

    #[test]
    fn consent_files_may_state_an_event_instead_of_a_date() {
        let c: Consent = toml_edit::de::from_str(
            r#"
            id = "c-9"
            subject = "subj-1"
            disclosers = ["county-mh"]
            recipients = ["metro-pd"]
            purposes = ["crisis-response"]
            valid_from = "2026-01-01T00:00:00Z"
            expiry_event = "end of the treatment episode"
            [scope]
            kinds = ["safety-plan"]
            "#,
        )
        .unwrap();
        assert_eq!(c.expires, None);
        assert!(c.is_active(at("2030-01-01T00:00:00Z")));
    }

    #[test]
    fn covers_needs_every_party_and_the_purpose() {
        let c = consent();
        let subject = "subj-1".parse().unwrap();
        let other: SubjectRef = "subj-2".parse().unwrap();
        let mh = "county-mh".parse().unwrap();
        let pd = "metro-pd".parse().unwrap();
        let purpose = "crisis-response".parse().unwrap();
        let q = ConsentQuery {
            subject: &subject,
            discloser: &mh,
            recipient: &pd,
            purpose: &purpose,
            kind: "safety-plan",
        };
        assert!(c.covers(&q));
        assert!(!c.covers(&ConsentQuery {
            subject: &other,
            ..q
        }));
        assert!(!c.covers(&ConsentQuery {
            recipient: &mh,
            ..q
        }));
        assert!(!c.covers(&ConsentQuery {
            kind: "referral",
            ..q
        }));
        let investigation = "investigation".parse().unwrap();
        assert!(!c.covers(&ConsentQuery {
            purpose: &investigation,
            ..q
        }));
    }

    #[test]
    fn psychotherapy_notes_need_the_field_named() {
        let mut c = consent();
        c.scope.kinds.insert("safety-plan".into());
        c.scope.categories.insert(Label::PsychotherapyNotes);
        let notes: BTreeSet<Label> = [Label::PsychotherapyNotes].into();
        assert!(!c.covers_field("safety-plan", "psychotherapy_notes", &notes));
        c.scope
            .fields
            .insert("safety-plan.psychotherapy_notes".into());
        assert!(c.covers_field("safety-plan", "psychotherapy_notes", &notes));
    }

    #[test]
    fn part2_needs_the_category_or_the_name() {
        let mut c = consent();
        c.scope.kinds.insert("safety-plan".into());
        let sud: BTreeSet<Label> = [Label::Sud, Label::Clinical].into();
        assert!(!c.covers_field("safety-plan", "substance_use_history", &sud));
        c.scope.categories.insert(Label::Sud);
        assert!(c.covers_field("safety-plan", "substance_use_history", &sud));
        let contact: BTreeSet<Label> = [Label::Contact].into();
        assert!(c.covers_field("safety-plan", "crisis_contacts", &contact));
    }
}
