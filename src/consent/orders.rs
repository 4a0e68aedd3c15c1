//! Court orders authorizing the use and disclosure of Part 2 records, as a compliance officer
//! records them, and their validation against the policy set.
//!
//! 42 CFR part 2, subpart E: a court may authorize a disclosure Part 2 otherwise forbids, under
//! 2.64 (noncriminal purposes) or 2.65 (to investigate or prosecute the patient). Such an order
//! authorizes but does not compel (2.61). The gateway records an order once the holding program
//! will disclose under it: who issued it (court, docket, date), whose records (subject,
//! disclosers), which records (the Part 2 fields, named one by one), to whom (one recipient),
//! for what (purposes) and until when. While it is in force the decision releases exactly those
//! fields for exactly that flow, with the order as the legal basis; nothing else changes.
//!
//! Validation is pure and reports every problem at once.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::directive::{MAX_LIST, MAX_SHORT_TEXT, MAX_SUBJECTS, Problem};
use super::restrictions::{date_field, time_field};
use crate::domain::{CourtOrder, Label, PartnerId, Purpose, SubjectIdentifier, SubjectRef};
use crate::policy::PolicySet;
use crate::policy::model::{is_known_purpose, is_law_enforcement_purpose};

/// The section of 42 CFR part 2 the order was entered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderSection {
    /// 42 CFR 2.64: noncriminal purposes.
    #[serde(rename = "2.64")]
    Noncriminal,
    /// 42 CFR 2.65: to investigate or prosecute the patient.
    #[serde(rename = "2.65")]
    Criminal,
}

impl OrderSection {
    /// `42 CFR 2.64` or `42 CFR 2.65`.
    pub fn citation(self) -> &'static str {
        match self {
            Self::Noncriminal => "42 CFR 2.64",
            Self::Criminal => "42 CFR 2.65",
        }
    }
}

/// A court order as recorded (and sealed at rest). `Debug` shows no personal data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourtOrderRecord {
    /// The person's identifiers.
    pub subjects: Vec<SubjectIdentifier>,
    /// The court that entered it.
    pub court: String,
    /// Its docket or case number.
    pub docket: String,
    /// The day it was entered.
    pub order_date: NaiveDate,
    /// The section it was entered under.
    pub section: OrderSection,
    /// The programs whose records it authorizes them to disclose.
    pub disclosers: BTreeSet<PartnerId>,
    /// The one recipient it names.
    pub recipient: PartnerId,
    /// The purposes it authorizes.
    pub purposes: BTreeSet<Purpose>,
    /// The Part 2 fields it authorizes, `kind.field`.
    pub fields: BTreeSet<String>,
    /// From when it is in force.
    pub valid_from: DateTime<Utc>,
    /// When it ends.
    pub until: DateTime<Utc>,
}

impl std::fmt::Debug for CourtOrderRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CourtOrderRecord")
            .field("subjects", &self.subjects.len())
            .field("section", &self.section)
            .field("recipient", &self.recipient)
            .field("purposes", &self.purposes)
            .finish_non_exhaustive()
    }
}

impl CourtOrderRecord {
    /// The decision input, with `subject` standing for the person.
    pub fn to_order(
        &self,
        id: &str,
        subject: &SubjectRef,
        ended_at: Option<DateTime<Utc>>,
    ) -> CourtOrder {
        CourtOrder {
            id: id.to_owned(),
            subject: subject.clone(),
            disclosers: self.disclosers.clone(),
            recipient: self.recipient.clone(),
            purposes: self.purposes.clone(),
            fields: self.fields.clone(),
            valid_from: self.valid_from,
            until: self.until,
            ended_at,
        }
    }
}

/// A court order as submitted (`POST /v1/court-orders`); every member may be absent so that a
/// missing one is named.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourtOrderRequest {
    /// The person's identifiers.
    #[serde(default)]
    pub subjects: Vec<SubjectIdentifier>,
    /// The court.
    #[serde(default)]
    pub court: Option<String>,
    /// The docket or case number.
    #[serde(default)]
    pub docket: Option<String>,
    /// The day it was entered, `YYYY-MM-DD`.
    #[serde(default)]
    pub order_date: Option<String>,
    /// `2.64` or `2.65`.
    #[serde(default)]
    pub section: Option<OrderSection>,
    /// The programs whose records it covers.
    #[serde(default)]
    pub disclosers: BTreeSet<PartnerId>,
    /// The recipient.
    #[serde(default)]
    pub recipient: Option<PartnerId>,
    /// The purposes.
    #[serde(default)]
    pub purposes: BTreeSet<Purpose>,
    /// The Part 2 fields, `kind.field`.
    #[serde(default)]
    pub fields: BTreeSet<String>,
    /// From when, RFC 3339 (default: when it is recorded).
    #[serde(default)]
    pub valid_from: Option<String>,
    /// Until when, RFC 3339.
    #[serde(default)]
    pub until: Option<String>,
}

impl std::fmt::Debug for CourtOrderRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CourtOrderRequest")
            .field("subjects", &self.subjects.len())
            .finish_non_exhaustive()
    }
}

fn text(
    problem: &mut impl FnMut(&str, &'static str, String),
    field: &str,
    value: Option<&str>,
    what: &str,
) -> String {
    let v = value.map(str::trim).unwrap_or("");
    if v.is_empty() || v.chars().count() > MAX_SHORT_TEXT {
        problem(
            field,
            "missing",
            format!("give {what}, 1 to {MAX_SHORT_TEXT} characters"),
        );
    }
    v.to_owned()
}

/// Validates a court order. Every problem is reported at once.
pub fn validate(
    req: &CourtOrderRequest,
    policy: &PolicySet,
    now: DateTime<Utc>,
) -> Result<CourtOrderRecord, Vec<Problem>> {
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
    let court = text(
        &mut problem,
        "court",
        req.court.as_deref(),
        "the court that entered the order",
    );
    let docket = text(
        &mut problem,
        "docket",
        req.docket.as_deref(),
        "the docket or case number",
    );
    let order_date = date_field(&mut problem, "order_date", req.order_date.as_deref());
    match (order_date, &req.order_date) {
        (None, None) => problem(
            "order_date",
            "missing",
            "give the day the order was entered, `YYYY-MM-DD`".into(),
        ),
        (Some(d), _) if d > now.date_naive() => problem(
            "order_date",
            "in_future",
            "`order_date` may not be in the future".into(),
        ),
        _ => {}
    }
    if req.section.is_none() {
        problem(
            "section",
            "missing",
            "give the section the order was entered under: `2.64` (noncriminal purposes) or \
             `2.65` (to investigate or prosecute the patient)"
                .into(),
        );
    }
    if req.disclosers.is_empty() || req.disclosers.len() > MAX_LIST {
        problem(
            "disclosers",
            "missing",
            format!("name the programs whose records the order covers (1 to {MAX_LIST})"),
        );
    }
    for d in &req.disclosers {
        if policy.partner_kind(d).is_none() {
            problem(
                "disclosers",
                "unknown_partner",
                format!("`{d}` is not a registered partner"),
            );
        }
    }
    match &req.recipient {
        None => problem(
            "recipient",
            "missing",
            "name the one recipient the order authorizes".into(),
        ),
        Some(r) if policy.partner_kind(r).is_none() => problem(
            "recipient",
            "unknown_partner",
            format!("`{r}` is not a registered partner"),
        ),
        Some(_) => {}
    }
    if req.purposes.is_empty() || req.purposes.len() > MAX_LIST {
        problem(
            "purposes",
            "missing",
            format!("name the purposes the order authorizes (1 to {MAX_LIST})"),
        );
    }
    for p in &req.purposes {
        if !is_known_purpose(p.as_str()) {
            problem(
                "purposes",
                "unknown_purpose",
                format!("`{p}` is not a purpose of use the gateway knows"),
            );
        } else if is_law_enforcement_purpose(p.as_str())
            && req.section == Some(OrderSection::Noncriminal)
        {
            problem(
                "purposes",
                "needs_2_65",
                format!(
                    "`{p}` is a criminal purpose: only an order under 42 CFR 2.65 authorizes \
                     Part 2 records to investigate or prosecute the patient"
                ),
            );
        }
    }
    if req.fields.is_empty() || req.fields.len() > MAX_LIST {
        problem(
            "fields",
            "missing",
            format!(
                "name each Part 2 field the order authorizes as `kind.field` (1 to {MAX_LIST})"
            ),
        );
    }
    for f in &req.fields {
        let found = f
            .split_once('.')
            .and_then(|(k, name)| policy.kinds.get(k).map(|k| (k, k.field(name))));
        match found {
            Some((_, Some(fd))) if fd.labels.contains(&Label::Sud) => {}
            Some((_, Some(_))) => problem(
                "fields",
                "not_part2",
                format!(
                    "`{f}` is not Part 2 information (label `sud`): a court order here \
                     authorizes Part 2 fields only; other fields flow under the MOUs"
                ),
            ),
            Some((k, None)) => problem(
                "fields",
                "unknown_field",
                format!("record kind `{}` has no such field: `{f}`", k.id),
            ),
            None => problem(
                "fields",
                "unknown_field",
                format!(
                    "`{f}` is not a field; write `kind.field`, e.g. `safety-plan.substance_use_history`"
                ),
            ),
        }
        if let Some((k, _)) = found {
            for d in &req.disclosers {
                if policy.partner_kind(d).is_some_and(|pk| pk != k.owner) {
                    problem(
                        "disclosers",
                        "not_a_holder",
                        format!("`{d}` does not hold `{}` records", k.id),
                    );
                }
            }
        }
    }
    let valid_from =
        time_field(&mut problem, "valid_from", req.valid_from.as_deref()).unwrap_or(now);
    let until = time_field(&mut problem, "until", req.until.as_deref());
    match (until, &req.until) {
        (None, None) => problem(
            "until",
            "missing",
            "give the order's end, RFC 3339 (an order is never open-ended here)".into(),
        ),
        (Some(u), _) if u <= valid_from || u <= now => problem(
            "until",
            "ends_before_start",
            "`until` must follow `valid_from` and the present".into(),
        ),
        _ => {}
    }
    problems.dedup();
    let (Some(order_date), Some(section), Some(recipient), Some(until)) =
        (order_date, req.section, req.recipient.clone(), until)
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CourtOrderRecord {
        subjects: req.subjects.clone(),
        court,
        docket,
        order_date,
        section,
        disclosers: req.disclosers.clone(),
        recipient,
        purposes: req.purposes.clone(),
        fields: req.fields.clone(),
        valid_from,
        until,
    })
}
