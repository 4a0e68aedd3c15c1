//! A consent directive as a partner submits it, and its validation against the policy set and
//! 42 CFR 2.31.
//!
//! Every consent must name the person (one or more subject identifiers), who may disclose, to
//! whom, for which purposes, what information, and when it ends (a date or an event). A consent
//! whose scope reaches 42 CFR Part 2 information (the `sud` category, or a named field labelled
//! `sud`) must also hold every element of 42 CFR 2.31(a): a general release is not enough.
//! Psychotherapy notes are covered only by naming the field itself, never by a category.
//!
//! Validation is pure: it takes the directive, the policy set and the time, and either returns
//! a [`ValidConsent`] or a [`Rejection`] listing every problem (or every missing element) at once.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Consent, ConsentScope, SubjectRef};
use crate::domain::SubjectIdentifier;
use crate::domain::{PartnerId, Purpose};
use crate::policy::model::{PURPOSES, is_known_purpose, is_law_enforcement_purpose};
use crate::policy::{Label, PolicySet};

/// Most subject identifiers one consent may name.
pub const MAX_SUBJECTS: usize = crate::domain::MAX_SUBJECT_IDENTIFIERS;
/// Longest patient name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest expiration event, signature reference, in characters.
pub const MAX_SHORT_TEXT: usize = 500;
/// Longest revocation statement or note, in characters.
pub const MAX_LONG_TEXT: usize = 4000;
/// Most entries in each list of the scope, and most disclosers, recipients or purposes.
pub const MAX_LIST: usize = 64;

/// A consent directive as submitted (`POST /v1/consents`). Unknown fields are refused. Every
/// field may be absent in the JSON so that a missing element is reported by name
/// ([`Rejection::Incomplete`]) rather than as a parse error. `Debug` shows no personal data.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentDirective {
    /// The person's identifiers in the partners' systems, `[{"system", "value"}]`.
    #[serde(default)]
    pub subjects: Vec<SubjectIdentifier>,
    /// The patient's name, as on the signed form (42 CFR 2.31(a)(1)).
    #[serde(default)]
    pub patient_name: Option<String>,
    /// Partners allowed to disclose (2.31(a)(2)).
    #[serde(default)]
    pub disclosers: BTreeSet<PartnerId>,
    /// Partners allowed to receive, by name (2.31(a)(4)).
    #[serde(default)]
    pub recipients: BTreeSet<PartnerId>,
    /// Purposes of use (2.31(a)(5)).
    #[serde(default)]
    pub purposes: BTreeSet<Purpose>,
    /// What information (2.31(a)(3)).
    #[serde(default)]
    pub scope: ConsentScope,
    /// From when it is valid (default: when it is recorded).
    #[serde(default, deserialize_with = "de_valid_from")]
    pub valid_from: Option<DateTime<Utc>>,
    /// When it expires (2.31(a)(7)); this or `expiry_event`.
    #[serde(default, deserialize_with = "de_expires")]
    pub expires: Option<DateTime<Utc>>,
    /// The event on which it expires, e.g. "end of the treatment episode" (2.31(a)(7)).
    #[serde(default)]
    pub expiry_event: Option<String>,
    /// Reference to the signed form, e.g. a document-management id (2.31(a)(8)).
    #[serde(default)]
    pub signature_reference: Option<String>,
    /// The date the form was signed, `YYYY-MM-DD` (2.31(a)(9)).
    #[serde(default, deserialize_with = "de_signed_on")]
    pub signed_on: Option<NaiveDate>,
    /// The statement of the right to revoke and how to revoke, as on the form (2.31(a)(6)).
    #[serde(default)]
    pub revocation_statement: Option<String>,
}

/// Parses an RFC 3339 time, naming `field` in the error (serde alone would not).
pub fn parse_time_field<E: serde::de::Error>(field: &str, s: &str) -> Result<DateTime<Utc>, E> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            E::custom(format!(
                "`{field}`: `{}` is not an RFC 3339 time; use e.g. `2026-01-31T09:00:00Z`",
                s.chars().take(40).collect::<String>()
            ))
        })
}

fn de_time<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_time_field(field, &s))
        .transpose()
}

fn de_valid_from<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    de_time(d, "valid_from")
}

fn de_expires<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    de_time(d, "expires")
}

fn de_signed_on<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| {
                D::Error::custom(format!(
                    "`signed_on`: `{}` is not a date; use `YYYY-MM-DD`",
                    s.chars().take(40).collect::<String>()
                ))
            })
        })
        .transpose()
}

impl fmt::Debug for ConsentDirective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsentDirective")
            .field("subjects", &self.subjects.len())
            .field("disclosers", &self.disclosers)
            .field("recipients", &self.recipients)
            .field("purposes", &self.purposes)
            .finish_non_exhaustive()
    }
}

/// An element a consent must hold. The names are stable (they are the API's
/// `details.missing` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    /// At least one subject identifier (needed to find the consent; not a 2.31 element).
    Subjects,
    /// 2.31(a)(1): the patient's name.
    PatientName,
    /// 2.31(a)(2): who may disclose.
    Disclosers,
    /// 2.31(a)(3): what information, described specifically.
    Scope,
    /// 2.31(a)(4): the recipients by name.
    Recipients,
    /// 2.31(a)(5): the purpose.
    Purposes,
    /// 2.31(a)(6): the right to revoke and how.
    RevocationStatement,
    /// 2.31(a)(7): an expiration date or event.
    Expiration,
    /// 2.31(a)(8): the signature (a reference to the signed form).
    SignatureReference,
    /// 2.31(a)(9): the date signed.
    SignedOn,
}

impl Element {
    /// The nine elements of 42 CFR 2.31(a), in the regulation's order.
    pub const PART2: [Element; 9] = [
        Self::PatientName,
        Self::Disclosers,
        Self::Scope,
        Self::Recipients,
        Self::Purposes,
        Self::RevocationStatement,
        Self::Expiration,
        Self::SignatureReference,
        Self::SignedOn,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Subjects => "subjects",
            Self::PatientName => "patient_name",
            Self::Disclosers => "disclosers",
            Self::Scope => "scope",
            Self::Recipients => "recipients",
            Self::Purposes => "purposes",
            Self::RevocationStatement => "revocation_statement",
            Self::Expiration => "expiration",
            Self::SignatureReference => "signature_reference",
            Self::SignedOn => "signed_on",
        }
    }

    /// The paragraph of 42 CFR 2.31(a) that requires it, if any.
    pub fn paragraph(self) -> Option<&'static str> {
        Some(match self {
            Self::Subjects => return None,
            Self::PatientName => "2.31(a)(1)",
            Self::Disclosers => "2.31(a)(2)",
            Self::Scope => "2.31(a)(3)",
            Self::Recipients => "2.31(a)(4)",
            Self::Purposes => "2.31(a)(5)",
            Self::RevocationStatement => "2.31(a)(6)",
            Self::Expiration => "2.31(a)(7)",
            Self::SignatureReference => "2.31(a)(8)",
            Self::SignedOn => "2.31(a)(9)",
        })
    }

    /// What to supply, naming the JSON fields.
    pub fn what(self) -> &'static str {
        match self {
            Self::Subjects => "at least one subject identifier in `subjects`",
            Self::PatientName => "the patient's name in `patient_name`",
            Self::Disclosers => "who may disclose, as partner ids in `disclosers`",
            Self::Scope => {
                "what information, described specifically, in `scope` (record kinds with \
                 categories, or named fields `kind.field`; for substance-use information name \
                 the record kinds together with category `sud`, or name the fields)"
            }
            Self::Recipients => "the recipients by name, as partner ids in `recipients`",
            Self::Purposes => "the purposes of use in `purposes`",
            Self::RevocationStatement => {
                "the statement of the patient's right to revoke and how to revoke, in \
                 `revocation_statement`"
            }
            Self::Expiration => {
                "an expiration date in `expires` or an expiration event in `expiry_event`"
            }
            Self::SignatureReference => {
                "the signature, as a reference to the signed form, in `signature_reference`"
            }
            Self::SignedOn => "the date signed, `YYYY-MM-DD`, in `signed_on`",
        }
    }
}

/// One problem with a directive's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The JSON field at fault, e.g. `scope.fields`.
    pub field: String,
    /// A stable code, e.g. `unknown_partner`, `psychotherapy_notes_by_category`.
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a directive was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Some content is wrong (unknown partner, purpose, kind or field, bad dates, ...).
    Invalid(Vec<Problem>),
    /// Required elements are missing.
    Incomplete {
        /// Whether the consent covers 42 CFR Part 2 information (so every 2.31 element is
        /// required).
        part2: bool,
        /// The missing elements, in the regulation's order.
        missing: Vec<Element>,
    },
}

impl Rejection {
    /// A message for people: every problem or missing element, with the 2.31(a) paragraph.
    pub fn message(&self) -> String {
        match self {
            Self::Invalid(problems) => {
                let list: Vec<String> = problems
                    .iter()
                    .map(|p| format!("`{}`: {}", p.field, p.message))
                    .collect();
                format!("the consent cannot be recorded: {}", list.join("; "))
            }
            Self::Incomplete { part2, missing } => {
                let list: Vec<String> = missing
                    .iter()
                    .map(|e| match e.paragraph() {
                        Some(p) if *part2 => format!("`{}` (42 CFR {p}: {})", e.name(), e.what()),
                        _ => format!("`{}` ({})", e.name(), e.what()),
                    })
                    .collect();
                if *part2 {
                    format!(
                        "this consent covers substance-use information protected by 42 CFR \
                         Part 2, so it must hold every element of 42 CFR 2.31(a) (a general \
                         release is not enough); missing: {}",
                        list.join("; ")
                    )
                } else {
                    format!("the consent is incomplete; missing: {}", list.join("; "))
                }
            }
        }
    }
}

/// A directive that passed validation, normalized (texts trimmed, `valid_from` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConsent {
    /// The directive.
    pub directive: ConsentDirective,
    /// Whether it covers 42 CFR Part 2 information.
    pub part2: bool,
    /// Remarks for the submitter that do not refuse the consent (e.g. a Part 2 field of a
    /// listed kind that the consent does not cover).
    pub notes: Vec<String>,
}

impl ConsentDirective {
    /// The `valid_from` the consent was recorded with (the Unix epoch if unset, which a
    /// validated directive never is).
    pub fn valid_from_or_epoch(&self) -> DateTime<Utc> {
        self.valid_from.unwrap_or_default()
    }

    /// The decision input for this directive: `subject` stands for the person in the decision
    /// (e.g. the record's subject reference).
    pub fn to_consent(
        &self,
        id: &str,
        subject: &SubjectRef,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Consent {
        Consent {
            id: id.to_owned(),
            subject: subject.clone(),
            disclosers: self.disclosers.clone(),
            recipients: self.recipients.clone(),
            purposes: self.purposes.clone(),
            scope: self.scope.clone(),
            valid_from: self.valid_from_or_epoch(),
            expires: self.expires,
            expiry_event: self.expiry_event.clone(),
            revoked_at,
        }
    }
}

/// Whether a scope reaches 42 CFR Part 2 information: the `sud` category, or a named field
/// labelled `sud` in its kind.
pub fn covers_part2(scope: &ConsentScope, policy: &PolicySet) -> bool {
    scope.categories.contains(&Label::Sud)
        || scope.fields.iter().any(|f| {
            f.split_once('.').is_some_and(|(kind, field)| {
                policy
                    .kinds
                    .get(kind)
                    .and_then(|k| k.field(field))
                    .is_some_and(|fd| fd.labels.contains(&Label::Sud))
            })
        })
}

fn trimmed(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn bad_text(s: &str, max: usize, multiline: bool) -> Option<String> {
    if s.chars().count() > max {
        return Some(format!("use at most {max} characters"));
    }
    let bad_char = s
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')));
    bad_char.then(|| {
        if multiline {
            "remove control characters (line breaks and tabs are allowed)".to_owned()
        } else {
            "remove control characters and line breaks".to_owned()
        }
    })
}

/// Validates a directive against the policy set at `now`. On success, texts are trimmed and
/// `valid_from` defaults to `now`.
pub fn validate(
    directive: &ConsentDirective,
    policy: &PolicySet,
    now: DateTime<Utc>,
) -> Result<ValidConsent, Rejection> {
    let mut d = directive.clone();
    let mut problems = Problems::default();
    check_texts(&mut d, &mut problems);
    check_subjects(&d, &mut problems);
    check_parties(&d, policy, &mut problems);
    check_scope(&d.scope, policy, &mut problems);
    check_times(&d, now, &mut problems);
    d.valid_from = Some(d.valid_from.unwrap_or(now));
    let part2 = covers_part2(&d.scope, policy);
    if part2 {
        check_part2_purposes(&d, &mut problems);
    }
    if !problems.0.is_empty() {
        return Err(Rejection::Invalid(problems.0));
    }
    let missing = missing_elements(&d, part2);
    if !missing.is_empty() {
        return Err(Rejection::Incomplete { part2, missing });
    }
    let notes = notes(&d.scope, policy);
    Ok(ValidConsent {
        directive: d,
        part2,
        notes,
    })
}

/// The problems found so far, each naming the field at fault.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: &str, code: &'static str, message: String) {
        self.0.push(Problem {
            field: field.to_owned(),
            code,
            message,
        });
    }
}

/// Texts: blank means absent (they are trimmed in `d`); otherwise bounded.
fn check_texts(d: &mut ConsentDirective, problems: &mut Problems) {
    d.patient_name = trimmed(&d.patient_name);
    d.expiry_event = trimmed(&d.expiry_event);
    d.signature_reference = trimmed(&d.signature_reference);
    d.revocation_statement = trimmed(&d.revocation_statement);
    for (field, value, max, multiline) in [
        ("patient_name", &d.patient_name, MAX_NAME, false),
        ("expiry_event", &d.expiry_event, MAX_SHORT_TEXT, false),
        (
            "signature_reference",
            &d.signature_reference,
            MAX_SHORT_TEXT,
            false,
        ),
        (
            "revocation_statement",
            &d.revocation_statement,
            MAX_LONG_TEXT,
            true,
        ),
    ] {
        if let Some(why) = value.as_deref().and_then(|v| bad_text(v, max, multiline)) {
            problems.add(field, "invalid_text", why);
        }
    }
}

/// Subjects: bounded and listed once each.
fn check_subjects(d: &ConsentDirective, problems: &mut Problems) {
    if d.subjects.len() > MAX_SUBJECTS {
        problems.add(
            "subjects",
            "too_many",
            format!("name at most {MAX_SUBJECTS} identifiers"),
        );
    }
    let unique: BTreeSet<&SubjectIdentifier> = d.subjects.iter().collect();
    if unique.len() != d.subjects.len() {
        problems.add(
            "subjects",
            "duplicate_subject",
            "list each identifier once (values are compared after trimming and collapsing \
             white space)"
                .into(),
        );
    }
}

/// Disclosers and recipients are registered partners; purposes are known ones.
fn check_parties(d: &ConsentDirective, policy: &PolicySet, problems: &mut Problems) {
    for (field, set) in [("disclosers", &d.disclosers), ("recipients", &d.recipients)] {
        if set.len() > MAX_LIST {
            problems.add(
                field,
                "too_many",
                format!("name at most {MAX_LIST} partners"),
            );
        }
        for p in set {
            if policy.partners.get(p).is_none() {
                let known: Vec<String> = policy.partners.iter().map(|p| p.id.to_string()).collect();
                problems.add(
                    field,
                    "unknown_partner",
                    format!(
                        "partner `{p}` is not registered; registered partners: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    for p in &d.purposes {
        if !is_known_purpose(p.as_str()) {
            let known: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
            problems.add(
                "purposes",
                "unknown_purpose",
                format!(
                    "purpose `{p}` is not one the gateway knows; use one of: {}",
                    known.join(", ")
                ),
            );
        }
    }
}

/// The scope names declared kinds and fields, never psychotherapy notes by category, and no
/// category that matches nothing.
fn check_scope(s: &ConsentScope, policy: &PolicySet, problems: &mut Problems) {
    for (field, n) in [
        ("scope.kinds", s.kinds.len()),
        ("scope.categories", s.categories.len()),
        ("scope.fields", s.fields.len()),
    ] {
        if n > MAX_LIST {
            problems.add(
                field,
                "too_many",
                format!("list at most {MAX_LIST} entries"),
            );
        }
    }
    for k in &s.kinds {
        if !policy.kinds.contains_key(k) {
            let known: Vec<&str> = policy.kinds.keys().map(String::as_str).collect();
            problems.add(
                "scope.kinds",
                "unknown_kind",
                format!(
                    "record kind `{k}` is not declared; declared kinds: {}",
                    known.join(", ")
                ),
            );
        }
    }
    for f in &s.fields {
        match f.split_once('.') {
            None => problems.add(
                "scope.fields",
                "invalid_field",
                format!(
                    "`{f}` is not of the form `kind.field`, e.g. `safety-plan.crisis_contacts`"
                ),
            ),
            Some((kind, field)) => match policy.kinds.get(kind) {
                None => problems.add(
                    "scope.fields",
                    "unknown_kind",
                    format!("`{f}`: record kind `{kind}` is not declared"),
                ),
                Some(k) if k.field(field).is_none() => {
                    let known: Vec<&str> = k.fields.iter().map(|fd| fd.name.as_str()).collect();
                    problems.add(
                        "scope.fields",
                        "unknown_field",
                        format!(
                            "`{f}`: kind `{kind}` has no field `{field}`; its fields: {}",
                            known.join(", ")
                        ),
                    );
                }
                Some(_) => {}
            },
        }
    }
    if s.categories.contains(&Label::PsychotherapyNotes) {
        problems.add(
            "scope.categories",
            "psychotherapy_notes_by_category",
            "psychotherapy notes cannot be consented to by category (HIPAA 164.508(a)(2) needs \
             an authorization that names them): remove `psychotherapy-notes` from \
             `scope.categories` and name the field instead, e.g. \
             `safety-plan.psychotherapy_notes` in `scope.fields`"
                .into(),
        );
    }
    // A category must match some field of the listed kinds (or of any kind when none is
    // listed), or it describes nothing.
    for c in s
        .categories
        .iter()
        .filter(|c| **c != Label::PsychotherapyNotes)
    {
        let in_scope = policy
            .kinds
            .values()
            .filter(|k| s.kinds.is_empty() || s.kinds.contains(&k.id))
            .any(|k| k.fields.iter().any(|f| f.labels.contains(c)));
        let kinds_known = s.kinds.iter().all(|k| policy.kinds.contains_key(k));
        if !in_scope && kinds_known {
            problems.add(
                "scope.categories",
                "category_matches_nothing",
                format!(
                    "no field of the listed kinds carries category `{c}`; remove it or list the \
                     record kinds that hold such information"
                ),
            );
        }
    }
}

/// It expires after it starts, was not signed in the future, and is not valid before it was
/// signed (`valid_from` defaults to `now`).
fn check_times(d: &ConsentDirective, now: DateTime<Utc>, problems: &mut Problems) {
    let valid_from = d.valid_from.unwrap_or(now);
    if let Some(expires) = d.expires
        && expires <= valid_from
    {
        problems.add(
            "expires",
            "expires_before_start",
            format!(
                "the consent would expire ({}) before it starts ({}); `expires` must be after \
                 `valid_from`",
                expires.to_rfc3339(),
                valid_from.to_rfc3339()
            ),
        );
    }
    if let Some(signed) = d.signed_on {
        let today = now.date_naive();
        if signed > today + Duration::days(1) {
            problems.add(
                "signed_on",
                "signed_in_future",
                format!("`signed_on` ({signed}) is in the future"),
            );
        }
        // One day of leeway for the time zone of the signature.
        if valid_from.date_naive() + Duration::days(1) < signed {
            problems.add(
                "valid_from",
                "valid_before_signed",
                format!(
                    "a consent cannot be valid ({}) before it was signed ({signed})",
                    valid_from.date_naive()
                ),
            );
        }
    }
}

/// 42 CFR 2.12: no law-enforcement purpose for Part 2 information.
fn check_part2_purposes(d: &ConsentDirective, problems: &mut Problems) {
    for p in d
        .purposes
        .iter()
        .filter(|p| is_law_enforcement_purpose(p.as_str()))
    {
        problems.add(
            "purposes",
            "part2_law_enforcement_purpose",
            format!(
                "42 CFR 2.12: substance-use (Part 2) information may not be used to \
                 investigate or prosecute the patient, and a consent cannot allow it (that \
                 needs a court order under 42 CFR 2.65); remove purpose `{p}` or the Part 2 \
                 information from the scope"
            ),
        );
    }
}

/// The elements 42 CFR 2.31(a) (or, without Part 2 information, the gateway) requires that the
/// consent lacks.
fn missing_elements(d: &ConsentDirective, part2: bool) -> Vec<Element> {
    let s = &d.scope;
    let scope_empty = s.kinds.is_empty() && s.categories.is_empty() && s.fields.is_empty();
    // Part 2 information "described specifically": the sud category must come with the record
    // kinds it is taken from (or the fields be named).
    let sud_anywhere = part2 && s.categories.contains(&Label::Sud) && s.kinds.is_empty();
    let mut missing = Vec::new();
    if d.subjects.is_empty() {
        missing.push(Element::Subjects);
    }
    let present = |e: Element| match e {
        Element::Subjects => !d.subjects.is_empty(),
        Element::PatientName => d.patient_name.is_some(),
        Element::Disclosers => !d.disclosers.is_empty(),
        Element::Scope => !(scope_empty || sud_anywhere),
        Element::Recipients => !d.recipients.is_empty(),
        Element::Purposes => !d.purposes.is_empty(),
        Element::RevocationStatement => d.revocation_statement.is_some(),
        Element::Expiration => d.expires.is_some() || d.expiry_event.is_some(),
        Element::SignatureReference => d.signature_reference.is_some(),
        Element::SignedOn => d.signed_on.is_some(),
    };
    let required: &[Element] = if part2 {
        &Element::PART2
    } else {
        &[
            Element::Disclosers,
            Element::Scope,
            Element::Recipients,
            Element::Purposes,
            Element::Expiration,
        ]
    };
    missing.extend(required.iter().copied().filter(|e| !present(*e)));
    missing
}

/// The fields in which `asked` differs from the recorded directive `recorded`, by their JSON
/// names (texts compared trimmed; an unstated `valid_from` matches the one recorded, which
/// defaulted to the time of recording). Used where a client restates a consent to change its
/// status: the content of a recorded consent is never edited.
pub fn differences(recorded: &ConsentDirective, asked: &ConsentDirective) -> Vec<&'static str> {
    let text = |v: &Option<String>| trimmed(v);
    let mut out = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            out.push(name);
        }
    };
    check("subjects", recorded.subjects == asked.subjects);
    check(
        "patient_name",
        text(&recorded.patient_name) == text(&asked.patient_name),
    );
    check("disclosers", recorded.disclosers == asked.disclosers);
    check("recipients", recorded.recipients == asked.recipients);
    check("purposes", recorded.purposes == asked.purposes);
    check("scope", recorded.scope == asked.scope);
    check(
        "valid_from",
        asked.valid_from.is_none() || recorded.valid_from == asked.valid_from,
    );
    check("expires", recorded.expires == asked.expires);
    check(
        "expiry_event",
        text(&recorded.expiry_event) == text(&asked.expiry_event),
    );
    check(
        "signature_reference",
        text(&recorded.signature_reference) == text(&asked.signature_reference),
    );
    check("signed_on", recorded.signed_on == asked.signed_on);
    check(
        "revocation_statement",
        text(&recorded.revocation_statement) == text(&asked.revocation_statement),
    );
    out
}

/// Remarks on fields of the listed kinds that the scope does not reach although a reader might
/// expect it to (Part 2 fields without the `sud` category, psychotherapy notes not named).
fn notes(scope: &ConsentScope, policy: &PolicySet) -> Vec<String> {
    let mut out = Vec::new();
    for kind in scope.kinds.iter().filter_map(|k| policy.kinds.get(k)) {
        for f in &kind.fields {
            let named = scope.fields.contains(&format!("{}.{}", kind.id, f.name));
            if named {
                continue;
            }
            if f.labels.contains(&Label::PsychotherapyNotes) {
                out.push(format!(
                    "`{}.{}` holds psychotherapy notes, which this consent does not cover: they \
                     are covered only when named in `scope.fields`",
                    kind.id, f.name
                ));
            } else if f.labels.contains(&Label::Sud) && !scope.categories.contains(&Label::Sud) {
                out.push(format!(
                    "`{}.{}` holds substance-use (42 CFR Part 2) information, which this consent \
                     does not cover: add category `sud` or name the field",
                    kind.id, f.name
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicySet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        PolicySet::load_unkeyed(&dir, at("2026-03-01T00:00:00Z"))
            .unwrap()
            .0
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn part2() -> ConsentDirective {
        serde_json::from_value(serde_json::json!({
            "subjects": [{"system": "county-mh", "value": "MRN-1"}],
            "patient_name": "Pat Example",
            "disclosers": ["county-mh"],
            "recipients": ["metro-pd"],
            "purposes": ["crisis-response"],
            "scope": {"kinds": ["safety-plan"], "categories": ["sud"],
                      "fields": ["safety-plan.crisis_contacts"]},
            "valid_from": "2026-02-01T00:00:00Z",
            "expires": "2027-02-01T00:00:00Z",
            "signature_reference": "DMS-1",
            "signed_on": "2026-02-01",
            "revocation_statement": "You may revoke in writing at any time.",
        }))
        .unwrap()
    }

    const NOW: &str = "2026-03-01T00:00:00Z";

    fn missing(d: &ConsentDirective) -> Vec<&'static str> {
        match validate(d, &policy(), at(NOW)) {
            Err(Rejection::Incomplete { missing, .. }) => {
                missing.iter().map(|e| e.name()).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn codes(d: &ConsentDirective) -> Vec<&'static str> {
        match validate(d, &policy(), at(NOW)) {
            Err(Rejection::Invalid(p)) => p.iter().map(|p| p.code).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_complete_part2_consent_passes() {
        let v = validate(&part2(), &policy(), at(NOW)).unwrap();
        assert!(v.part2);
        assert!(v.notes.iter().any(|n| n.contains("psychotherapy_notes")));
    }

    #[test]
    fn each_missing_part2_element_is_named() {
        let p = policy();
        type Strip = fn(&mut ConsentDirective);
        let cases: [(&str, Strip); 9] = [
            ("patient_name", |d| d.patient_name = Some("  ".into())),
            ("disclosers", |d| d.disclosers.clear()),
            ("scope", |d| {
                d.scope.kinds.clear();
                d.scope.fields.clear();
            }),
            ("recipients", |d| d.recipients.clear()),
            ("purposes", |d| d.purposes.clear()),
            ("revocation_statement", |d| d.revocation_statement = None),
            ("expiration", |d| d.expires = None),
            ("signature_reference", |d| d.signature_reference = None),
            ("signed_on", |d| d.signed_on = None),
        ];
        for (name, strip) in cases {
            let mut d = part2();
            strip(&mut d);
            let r = validate(&d, &p, at(NOW)).unwrap_err();
            match &r {
                Rejection::Incomplete { part2, missing } => {
                    assert!(part2, "{name}");
                    assert_eq!(
                        missing.iter().map(|e| e.name()).collect::<Vec<_>>(),
                        vec![name]
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(r.message().contains("2.31(a)("), "{}", r.message());
        }
        let mut d = part2();
        d.expires = None;
        d.expiry_event = Some("end of the treatment episode".into());
        assert!(
            validate(&d, &p, at(NOW)).is_ok(),
            "an event is an expiration"
        );
    }

    #[test]
    fn a_general_consent_needs_fewer_elements() {
        let mut d = part2();
        d.scope = ConsentScope {
            fields: ["safety-plan.crisis_contacts".into()].into(),
            ..Default::default()
        };
        d.patient_name = None;
        d.signature_reference = None;
        d.signed_on = None;
        d.revocation_statement = None;
        let v = validate(&d, &policy(), at(NOW)).unwrap();
        assert!(!v.part2);
        d.expires = None;
        d.subjects.clear();
        assert_eq!(missing(&d), vec!["subjects", "expiration"]);
    }

    #[test]
    fn a_named_part2_field_makes_a_part2_consent() {
        let mut d = part2();
        d.scope = ConsentScope {
            fields: ["safety-plan.substance_use_history".into()].into(),
            ..Default::default()
        };
        d.signed_on = None;
        assert_eq!(missing(&d), vec!["signed_on"]);
    }

    #[test]
    fn part2_by_category_needs_the_kinds() {
        let mut d = part2();
        d.scope = ConsentScope {
            categories: [Label::Sud].into(),
            ..Default::default()
        };
        assert_eq!(missing(&d), vec!["scope"]);
    }

    #[test]
    fn psychotherapy_notes_by_category_are_refused() {
        let mut d = part2();
        d.scope.categories.insert(Label::PsychotherapyNotes);
        assert_eq!(codes(&d), vec!["psychotherapy_notes_by_category"]);
        let mut d = part2();
        d.scope
            .fields
            .insert("safety-plan.psychotherapy_notes".into());
        assert!(validate(&d, &policy(), at(NOW)).is_ok());
    }

    #[test]
    fn content_is_checked_against_the_policy() {
        let mut d = part2();
        d.recipients.insert("fire-dept".parse().unwrap());
        d.purposes.insert("marketing".parse().unwrap());
        d.scope.kinds.insert("tax-return".into());
        d.scope.fields.insert("safety-plan.shoe_size".into());
        d.scope.fields.insert("nodot".into());
        assert_eq!(
            codes(&d),
            vec![
                "unknown_partner",
                "unknown_purpose",
                "unknown_kind",
                "invalid_field",
                "unknown_field"
            ]
        );
        let mut d = part2();
        d.scope.categories.insert(Label::Cji);
        assert_eq!(codes(&d), vec!["category_matches_nothing"]);
        let mut d = part2();
        d.purposes.insert("investigation".parse().unwrap());
        assert_eq!(codes(&d), vec!["part2_law_enforcement_purpose"]);
    }

    #[test]
    fn dates_are_checked() {
        let mut d = part2();
        d.expires = Some(at("2026-01-01T00:00:00Z"));
        assert_eq!(codes(&d), vec!["expires_before_start"]);
        let mut d = part2();
        d.signed_on = NaiveDate::from_ymd_opt(2026, 3, 5);
        assert_eq!(codes(&d), vec!["signed_in_future", "valid_before_signed"]);
        let mut d = part2();
        d.valid_from = None;
        let v = validate(&d, &policy(), at(NOW)).unwrap();
        assert_eq!(v.directive.valid_from, Some(at(NOW)), "defaults to now");
    }

    #[test]
    fn texts_are_bounded_and_trimmed() {
        let mut d = part2();
        d.patient_name = Some("x".repeat(MAX_NAME + 1));
        d.signature_reference = Some("a\nb".into());
        assert_eq!(codes(&d), vec!["invalid_text", "invalid_text"]);
        let mut d = part2();
        d.patient_name = Some("  Pat Example ".into());
        d.revocation_statement = Some("Line one.\nLine two.".into());
        let v = validate(&d, &policy(), at(NOW)).unwrap();
        assert_eq!(v.directive.patient_name.as_deref(), Some("Pat Example"));
    }

    #[test]
    fn duplicate_subjects_and_unknown_json_fields_are_refused() {
        let mut d = part2();
        d.subjects
            .push(SubjectIdentifier::new("county-mh", " MRN-1 ").unwrap());
        assert_eq!(codes(&d), vec!["duplicate_subject"]);
        let r: Result<ConsentDirective, _> =
            serde_json::from_value(serde_json::json!({"subjects": [], "colour": "red"}));
        assert!(r.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn bad_dates_are_refused_naming_the_field() {
        for (field, value) in [
            ("signed_on", "yesterday"),
            ("expires", "next year"),
            ("valid_from", "2026-13-01"),
        ] {
            let r: Result<ConsentDirective, _> =
                serde_json::from_value(serde_json::json!({ field: value }));
            let e = r.unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{e}");
        }
        let d: ConsentDirective = serde_json::from_value(serde_json::json!({
            "valid_from": "2026-01-31T09:00:00.123456+01:00", "expires": null
        }))
        .unwrap();
        assert_eq!(d.valid_from, Some(at("2026-01-31T08:00:00.123456Z")));
        assert_eq!(d.expires, None);
    }

    #[test]
    fn debug_shows_no_personal_data() {
        let shown = format!("{:?}", part2());
        assert!(
            !shown.contains("Pat") && !shown.contains("MRN-1"),
            "{shown}"
        );
    }

    #[test]
    fn differences_name_each_changed_field() {
        let recorded = validate(&part2(), &policy(), at(NOW)).unwrap().directive;
        let mut asked = recorded.clone();
        asked.valid_from = None;
        asked.patient_name = Some("  Pat Example ".into());
        assert!(differences(&recorded, &asked).is_empty());
        asked.recipients.insert("county-mh".parse().unwrap());
        asked.expires = None;
        assert_eq!(
            differences(&recorded, &asked),
            vec!["recipients", "expires"]
        );
    }

    #[test]
    fn the_decision_input_keeps_the_flow_and_the_expiry() {
        let v = validate(&part2(), &policy(), at(NOW)).unwrap();
        let subject: SubjectRef = "s-1".parse().unwrap();
        let c = v.directive.to_consent("c-1", &subject, None);
        assert_eq!(c.expires, Some(at("2027-02-01T00:00:00Z")));
        assert!(c.is_active(at(NOW)));
        assert!(c.scope.categories.contains(&Label::Sud));
    }
}
