//! Agreed restrictions as an agency records them, and their validation against the policy
//! set.
//!
//! HIPAA 45 CFR 164.522(a)(1): an individual may ask a covered entity to restrict uses and
//! disclosures of their information; a covered entity that agrees "may not use or disclose
//! protected health information in violation of such restriction" (164.522(a)(1)(iii)), except
//! to a health care provider for the individual's emergency treatment, and the restriction is
//! not effective against disclosures permitted or required under 164.512 (164.522(a)(1)(v)).
//! 42 CFR 2.26 gives patients of Part 2 programs the same right. The agency that agreed records
//! the restriction here (it is the restricted discloser); from then on the decision withholds
//! what it covers from the flows it names (see `policy::decide`).
//!
//! Validation is pure: the request, the recording partner, the policy set and the time in; a
//! [`Restriction`]-ready record or every problem at once out.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::directive::{MAX_LIST, MAX_SHORT_TEXT, MAX_SUBJECTS, Problem};
use crate::domain::{
    PartnerId, Purpose, Restriction, RestrictionScope, SubjectIdentifier, SubjectRef,
};
use crate::policy::PolicySet;
use crate::policy::model::is_known_purpose;

/// A restriction as recorded (and sealed at rest). `Debug` shows no personal data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictionRecord {
    /// The person's identifiers.
    pub subjects: Vec<SubjectIdentifier>,
    /// The agency that agreed to it (the recording partner).
    pub discloser: PartnerId,
    /// Recipients it restricts; empty: every recipient.
    pub recipients: BTreeSet<PartnerId>,
    /// Purposes it restricts; empty: every purpose.
    pub purposes: BTreeSet<Purpose>,
    /// What it covers.
    pub scope: RestrictionScope,
    /// From when it holds.
    pub valid_from: DateTime<Utc>,
    /// When it ends; `None`: until terminated.
    pub until: Option<DateTime<Utc>>,
    /// The day the agency agreed to it with the person.
    pub agreed_on: NaiveDate,
    /// Where the agreement is documented (a document-management id).
    pub reference: String,
}

impl std::fmt::Debug for RestrictionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestrictionRecord")
            .field("subjects", &self.subjects.len())
            .field("discloser", &self.discloser)
            .field("recipients", &self.recipients)
            .field("purposes", &self.purposes)
            .finish_non_exhaustive()
    }
}

impl RestrictionRecord {
    /// The decision input, with `subject` standing for the person.
    pub fn to_restriction(
        &self,
        id: &str,
        subject: &SubjectRef,
        ended_at: Option<DateTime<Utc>>,
    ) -> Restriction {
        Restriction {
            id: id.to_owned(),
            subject: subject.clone(),
            discloser: self.discloser.clone(),
            recipients: self.recipients.clone(),
            purposes: self.purposes.clone(),
            scope: self.scope.clone(),
            valid_from: self.valid_from,
            until: self.until,
            ended_at,
        }
    }
}

/// A restriction as submitted (`POST /v1/restrictions`); every member may be absent so that a
/// missing one is named.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictionRequest {
    /// The person's identifiers, `[{"system", "value"}]`.
    #[serde(default)]
    pub subjects: Vec<SubjectIdentifier>,
    /// Recipients it restricts; empty or absent: every recipient.
    #[serde(default)]
    pub recipients: BTreeSet<PartnerId>,
    /// Purposes it restricts; empty or absent: every purpose.
    #[serde(default)]
    pub purposes: BTreeSet<Purpose>,
    /// What it covers.
    #[serde(default)]
    pub scope: RestrictionScope,
    /// From when, RFC 3339 (default: when it is recorded).
    #[serde(default)]
    pub valid_from: Option<String>,
    /// Until when, RFC 3339 (default: until terminated).
    #[serde(default)]
    pub until: Option<String>,
    /// The day the agency agreed to it, `YYYY-MM-DD`.
    #[serde(default)]
    pub agreed_on: Option<String>,
    /// Where the agreement is documented.
    #[serde(default)]
    pub reference: Option<String>,
}

impl std::fmt::Debug for RestrictionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestrictionRequest")
            .field("subjects", &self.subjects.len())
            .finish_non_exhaustive()
    }
}

/// Validates a restriction that `discloser` agreed to. Every problem is reported at once.
pub fn validate(
    req: &RestrictionRequest,
    discloser: &PartnerId,
    policy: &PolicySet,
    now: DateTime<Utc>,
) -> Result<RestrictionRecord, Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut problem = |field: &str, code: &'static str, message: String| {
        problems.push(Problem {
            field: field.to_owned(),
            code,
            message,
        });
    };
    if req.subjects.is_empty() {
        problem(
            "subjects",
            "missing",
            "name the person: `subjects` = [{\"system\", \"value\"}, ...]".into(),
        );
    } else if req.subjects.len() > MAX_SUBJECTS {
        problem(
            "subjects",
            "too_many",
            format!("at most {MAX_SUBJECTS} identifiers"),
        );
    }
    for r in &req.recipients {
        if policy.partner_kind(r).is_none() {
            problem(
                "recipients",
                "unknown_partner",
                format!("`{r}` is not a registered partner"),
            );
        }
    }
    if req.recipients.len() > MAX_LIST || req.purposes.len() > MAX_LIST {
        problem(
            "recipients",
            "too_many",
            format!("at most {MAX_LIST} recipients and {MAX_LIST} purposes"),
        );
    }
    for p in &req.purposes {
        if !is_known_purpose(p.as_str()) {
            problem(
                "purposes",
                "unknown_purpose",
                format!("`{p}` is not a purpose of use the gateway knows"),
            );
        }
    }
    let s = &req.scope;
    if s.is_empty() {
        problem(
            "scope",
            "missing",
            "say what the restriction covers: `scope.kinds`, `scope.categories` and/or \
             `scope.fields` (`kind.field`)"
                .into(),
        );
    }
    if s.kinds.len() > MAX_LIST || s.categories.len() > MAX_LIST || s.fields.len() > MAX_LIST {
        problem(
            "scope",
            "too_many",
            format!("at most {MAX_LIST} entries in each list of the scope"),
        );
    }
    for k in &s.kinds {
        if !policy.kinds.contains_key(k) {
            problem(
                "scope.kinds",
                "unknown_kind",
                format!("`{k}` is not a record kind"),
            );
        }
    }
    for c in &s.categories {
        let in_scope = policy
            .kinds
            .values()
            .filter(|k| s.kinds.is_empty() || s.kinds.contains(&k.id))
            .flat_map(|k| k.fields.iter())
            .any(|f| f.labels.contains(c));
        if !in_scope {
            problem(
                "scope.categories",
                "unknown_category",
                format!("no field of the listed kinds is labelled `{c}`"),
            );
        }
    }
    for f in &s.fields {
        let known = f
            .split_once('.')
            .and_then(|(k, name)| policy.kinds.get(k).and_then(|k| k.field(name)))
            .is_some();
        if !known {
            problem(
                "scope.fields",
                "unknown_field",
                format!(
                    "`{f}` is not a field; write `kind.field`, e.g. `safety-plan.crisis_contacts`"
                ),
            );
        }
    }
    let valid_from =
        time_field(&mut problem, "valid_from", req.valid_from.as_deref()).unwrap_or(now);
    let until = time_field(&mut problem, "until", req.until.as_deref());
    if let Some(u) = until
        && u <= valid_from
    {
        problem(
            "until",
            "ends_before_start",
            "`until` must follow `valid_from`".into(),
        );
    }
    let agreed_on = date_field(&mut problem, "agreed_on", req.agreed_on.as_deref());
    match agreed_on {
        None if req.agreed_on.is_some() => {}
        None => problem(
            "agreed_on",
            "missing",
            "give the day the agency agreed to the restriction, `YYYY-MM-DD`".into(),
        ),
        Some(d) if d > now.date_naive() => problem(
            "agreed_on",
            "in_future",
            "`agreed_on` may not be in the future".into(),
        ),
        Some(_) => {}
    }
    let reference = req.reference.as_deref().map(str::trim).unwrap_or("");
    if reference.is_empty() || reference.chars().count() > MAX_SHORT_TEXT {
        problem(
            "reference",
            "missing",
            format!(
                "say where the agreement is documented (e.g. a document-management id), 1 to \
                 {MAX_SHORT_TEXT} characters"
            ),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RestrictionRecord {
        subjects: req.subjects.clone(),
        discloser: discloser.clone(),
        recipients: req.recipients.clone(),
        purposes: req.purposes.clone(),
        scope: req.scope.clone(),
        valid_from,
        until,
        agreed_on: agreed_on.unwrap_or_else(|| now.date_naive()),
        reference: reference.to_owned(),
    })
}

/// An RFC 3339 time given as `field`, or a problem naming it.
pub(crate) fn time_field(
    problem: &mut impl FnMut(&str, &'static str, String),
    field: &str,
    value: Option<&str>,
) -> Option<DateTime<Utc>> {
    let v = value?;
    match DateTime::parse_from_rfc3339(v) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            problem(
                field,
                "invalid_time",
                format!("`{field}` is not an RFC 3339 time; use e.g. `2027-01-31T00:00:00Z`"),
            );
            None
        }
    }
}

/// A `YYYY-MM-DD` date given as `field`, or a problem naming it.
pub(crate) fn date_field(
    problem: &mut impl FnMut(&str, &'static str, String),
    field: &str,
    value: Option<&str>,
) -> Option<NaiveDate> {
    let v = value?;
    match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            problem(
                field,
                "invalid_date",
                format!("`{field}` is not a date; use `YYYY-MM-DD`"),
            );
            None
        }
    }
}
