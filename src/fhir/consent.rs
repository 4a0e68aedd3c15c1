//! FHIR `Consent` to and from a consent directive.
//!
//! [`parse`] turns a FHIR R4 `Consent` into the [`ConsentDirective`] that `POST /v1/consents`
//! takes, without judging it: completeness, the 42 CFR 2.31 elements, partners, purposes,
//! kinds and fields are then checked by [`crate::consent::directive::validate`] as for any
//! directive. [`render`] turns a recorded consent back into FHIR so that parsing it again gives
//! the same directive. The README's "FHIR Consent" table is the mapping, element by element.
//!
//! Security role: a provision the gateway cannot represent (a `deny`, a nested provision,
//! specific resources, a data period, an action other than disclosure) is refused, never
//! narrowed or widened into something else.

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use super::codes::{self, ACT_CODE, ACT_REASON, CONSENT_ACTION, CONSENT_POLICY, CONSENT_SCOPE};
use super::model::{
    self, CodeableConcept, Coding, ConsentActor, ConsentProvision, Extension, HumanName,
    Identifier, Meta, Patient, Period, Reference,
};
use super::{Problem, Problems, code_in, partner_of, partner_ref, read_resource};
use crate::consent::directive::{ConsentDirective, Element};
use crate::consent::registry::ReceivedHow;
use crate::domain::{Label, PartnerId, Purpose, SubjectIdentifier};
use crate::policy::PolicySet;
use crate::policy::model::is_known_purpose;
use crate::service::consents::ConsentView;

/// A FHIR Consent as read: the directive, the FHIR status, the id, and a revocation if one was
/// stated.
#[derive(Debug, Clone)]
pub struct ParsedConsent {
    /// The directive.
    pub directive: ConsentDirective,
    /// The FHIR status as sent.
    pub status: Option<String>,
    /// The id as sent.
    pub id: Option<String>,
    /// The revocation extension, if present.
    pub revocation: Option<RevocationStated>,
}

/// A revocation as stated in the gateway's revocation extension.
#[derive(Debug, Clone)]
pub struct RevocationStated {
    /// When it was received.
    pub received_at: Option<DateTime<Utc>>,
    /// How.
    pub received_how: Option<ReceivedHow>,
    /// A note.
    pub note: Option<String>,
}

/// Parses a FHIR time: a full date-time with offset, or a date (`end`: through the end of that
/// day, since FHIR periods include their end).
pub fn parse_time(s: &str, at: &str, end: bool) -> Result<DateTime<Utc>, Problem> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end { d + Duration::days(1) } else { d };
        if let Some(t) = day.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(Problem::new(
        at,
        "invalid_date",
        format!(
            "`{}` is not a date (`YYYY-MM-DD`) or a date-time with its offset \
             (`2026-01-31T09:00:00Z`)",
            s.chars().take(40).collect::<String>()
        ),
    ))
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A string member of a raw extension: `valueString` or `valueMarkdown`.
fn ext_text(e: &Value) -> Option<&str> {
    e.get("valueString")
        .or_else(|| e.get("valueMarkdown"))
        .and_then(Value::as_str)
}

fn ext_url(e: &Value) -> Option<&str> {
    e.get("url").and_then(Value::as_str)
}

fn unknown_code(at: &str, c: &Coding, what: &str, accepted: &str) -> Problem {
    let system = c.system.as_deref().unwrap_or("(none)");
    let code = c.code.as_deref().unwrap_or("(none)");
    Problem::new(
        at,
        "unknown_code",
        format!("`{system}|{code}` is not a {what} the gateway maps; use {accepted}"),
    )
}

fn unknown_system(at: &str, c: &Coding, what: &str, accepted: &str) -> Problem {
    Problem::new(
        at,
        "unknown_code_system",
        format!(
            "code system `{}` is not one the gateway maps for {what}; use {accepted}",
            c.system.as_deref().unwrap_or("(none)")
        ),
    )
}

/// The subject identifier a FHIR identifier stands for.
fn subject_of(id: &Identifier, at: &str) -> Result<SubjectIdentifier, Problem> {
    let prefix = codes::subject_system_prefix();
    let Some(system) = id.system.as_deref().and_then(|s| s.strip_prefix(&prefix)) else {
        return Err(Problem::new(
            format!("{at}.system"),
            "unknown_code_system",
            format!(
                "identify the person in a partner's system: `{prefix}<system>` (e.g. \
                 `{}`), not `{}`",
                codes::subject_system("county-mh"),
                id.system.as_deref().unwrap_or("(none)")
            ),
        ));
    };
    SubjectIdentifier::new(system, id.value.as_deref().unwrap_or_default())
        .map_err(|e| Problem::new(at, "invalid_identifier", format!("{e}")))
}

/// The FHIR form of a subject identifier.
pub fn subject_identifier(s: &SubjectIdentifier) -> Identifier {
    Identifier::new(&codes::subject_system(s.system()), s.value())
}

/// The person a `patient`/`subject` reference names: identifiers (from the reference's
/// identifier, or a contained Patient), name and phone.
pub(crate) struct Person {
    pub(crate) subjects: Vec<SubjectIdentifier>,
    pub(crate) name: Option<String>,
    pub(crate) phone: Option<String>,
}

pub(crate) fn person(
    r: &Reference,
    contained: &[Value],
    at: &str,
    container: &str,
    problems: &mut Problems,
) -> Person {
    let mut out = Person {
        subjects: Vec::new(),
        name: r
            .display
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        phone: None,
    };
    let mut patient: Option<Patient> = None;
    for (i, c) in contained.iter().enumerate() {
        let here = format!("{container}.contained[{i}]");
        match read_resource::<Patient>(c.clone(), "Patient") {
            Ok(p) => {
                if patient.is_some() {
                    problems.push(Problem::new(
                        here,
                        "unsupported_element",
                        "contain at most one Patient, the one the reference names",
                    ));
                } else {
                    patient = Some(p);
                }
            }
            Err(mut p) => {
                for x in &mut p {
                    x.field = x.field.replacen("Patient", &here, 1);
                }
                problems.extend(p);
            }
        }
    }
    match r.reference.as_deref() {
        Some(local) => {
            let wanted = local.strip_prefix('#');
            match (wanted, &patient) {
                (Some(id), Some(p)) if p.id.as_deref() == Some(id) => {
                    for (i, ident) in p.identifier.iter().enumerate() {
                        match subject_of(
                            ident,
                            &format!("{container}.contained[0].identifier[{i}]"),
                        ) {
                            Ok(s) => out.subjects.push(s),
                            Err(e) => problems.push(e),
                        }
                    }
                    if let Some(n) = p.name.first().and_then(HumanName::full) {
                        out.name = Some(n);
                    }
                    out.phone = p
                        .telecom
                        .iter()
                        .find(|t| t.system.as_deref() == Some("phone"))
                        .and_then(|t| t.value.clone());
                }
                _ => problems.push(Problem::new(
                    format!("{at}.reference"),
                    "invalid_reference",
                    format!(
                        "`{}` does not name a contained Patient: reference one as `#<id>`, or \
                         identify the person by `identifier` (the gateway holds no Patient \
                         resources)",
                        local.chars().take(64).collect::<String>()
                    ),
                )),
            }
            if let Some(ident) = &r.identifier {
                match subject_of(ident, &format!("{at}.identifier")) {
                    Ok(s) if out.subjects.contains(&s) => {}
                    Ok(_) => problems.push(Problem::new(
                        format!("{at}.identifier"),
                        "invalid_reference",
                        "the identifier must be one of the contained Patient's identifiers",
                    )),
                    Err(e) => problems.push(e),
                }
            }
        }
        None => {
            if patient.is_some() {
                problems.push(Problem::new(
                    format!("{container}.contained"),
                    "unsupported_element",
                    format!("a contained Patient must be referenced from `{at}` as `#<id>`"),
                ));
            }
            match &r.identifier {
                Some(ident) => match subject_of(ident, &format!("{at}.identifier")) {
                    Ok(s) => out.subjects.push(s),
                    Err(e) => problems.push(e),
                },
                None => problems.push(Problem::new(
                    at,
                    "invalid_reference",
                    "identify the person by `identifier` (or reference a contained Patient)",
                )),
            }
        }
    }
    out
}

/// What the categories say.
const CATEGORIES: &str = "LOINC 59284-0 or 64292-6, v3-ActCode IDSCL, INFA or 42CFRPart2CD";

/// Parses a FHIR `Consent` (already checked to be JSON) into a directive. Problems of the FHIR
/// form are all reported at once; the directive itself is judged later by the consent service.
pub fn parse(value: Value) -> Result<ParsedConsent, Problems> {
    let c: model::Consent = read_resource(value, "Consent")?;
    let mut problems = Problems::new();
    let mut d = ConsentDirective::default();

    // scope: privacy only.
    match &c.scope {
        None => problems.push(Problem::new(
            "Consent.scope",
            "missing_element",
            format!("`scope` is required: `{CONSENT_SCOPE}|patient-privacy`"),
        )),
        Some(s) => {
            let privacy = s
                .coding
                .iter()
                .any(|x| code_in(x, CONSENT_SCOPE) == Some("patient-privacy"));
            if !privacy {
                let why = s.coding.first().map_or_else(
                    || {
                        Problem::new(
                            "Consent.scope",
                            "missing_element",
                            format!("give `scope` as `{CONSENT_SCOPE}|patient-privacy`"),
                        )
                    },
                    |x| {
                        if x.system.as_deref() == Some(CONSENT_SCOPE) {
                            unknown_code(
                                "Consent.scope.coding[0]",
                                x,
                                "consent scope",
                                "`patient-privacy`: the gateway records privacy consents only",
                            )
                        } else {
                            unknown_system(
                                "Consent.scope.coding[0]",
                                x,
                                "the consent scope",
                                &format!("`{CONSENT_SCOPE}`"),
                            )
                        }
                    },
                );
                problems.push(why);
            }
        }
    }

    // category: at least one, every coding known.
    if c.category.is_empty() {
        problems.push(Problem::new(
            "Consent.category",
            "missing_element",
            format!("`category` is required: {CATEGORIES}"),
        ));
    }
    for (i, cat) in c.category.iter().enumerate() {
        for (j, x) in cat.coding.iter().enumerate() {
            let at = format!("Consent.category[{i}].coding[{j}]");
            let known = match x.system.as_deref() {
                Some(codes::LOINC) => matches!(x.code.as_deref(), Some("59284-0" | "64292-6")),
                Some(ACT_CODE) => {
                    matches!(x.code.as_deref(), Some("IDSCL" | "INFA" | "42CFRPart2CD"))
                }
                Some(CONSENT_SCOPE) => x.code.as_deref() == Some("patient-privacy"),
                _ => {
                    problems.push(unknown_system(&at, x, "consent categories", CATEGORIES));
                    continue;
                }
            };
            if !known {
                problems.push(unknown_code(&at, x, "consent category", CATEGORIES));
            }
        }
    }

    // policyRule: opt-in.
    if let Some(rule) = &c.policy_rule {
        for (j, x) in rule.coding.iter().enumerate() {
            let at = format!("Consent.policyRule.coding[{j}]");
            let ok = code_in(x, ACT_CODE) == Some("OPTIN")
                || matches!(code_in(x, CONSENT_POLICY), Some("hipaa-auth" | "cfr-part2"));
            if !ok {
                problems.push(unknown_code(
                    &at,
                    x,
                    "policy rule",
                    "v3-ActCode `OPTIN` or consentpolicycodes `hipaa-auth` / `cfr-part2` (the \
                     gateway records authorizations to disclose)",
                ));
            }
        }
    }

    // patient.
    match &c.patient {
        Some(r) => {
            let p = person(r, &c.contained, "Consent.patient", "Consent", &mut problems);
            d.subjects = p.subjects;
            d.patient_name = p.name;
        }
        None => {
            if !c.contained.is_empty() {
                problems.push(Problem::new(
                    "Consent.contained",
                    "unsupported_element",
                    "only a Patient referenced from `patient` may be contained",
                ));
            }
        }
    }

    // dateTime: the date signed.
    if let Some(s) = &c.date_time {
        let date = s
            .get(..10)
            .and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok());
        let full_ok = s.len() == 10 || DateTime::parse_from_rfc3339(s).is_ok();
        match date {
            Some(day) if full_ok => d.signed_on = Some(day),
            _ => problems.push(Problem::new(
                "Consent.dateTime",
                "invalid_date",
                "`dateTime` is the date signed: `YYYY-MM-DD` (or a date-time with its offset)",
            )),
        }
    }

    // organization: custodians, who disclose.
    for (i, r) in c.organization.iter().enumerate() {
        match partner_of(r, &format!("Consent.organization[{i}]")) {
            Ok(p) => {
                d.disclosers.insert(p);
            }
            Err(e) => problems.push(e),
        }
    }

    // source: the signed form.
    match (&c.source_attachment, &c.source_reference) {
        (Some(_), Some(_)) => problems.push(Problem::new(
            "Consent.source[x]",
            "unsupported_value",
            "give the signed form once, as `sourceAttachment` or `sourceReference`",
        )),
        (Some(a), None) => {
            d.signature_reference = a.title.clone().or_else(|| a.url.clone());
            if d.signature_reference.is_none() {
                problems.push(Problem::new(
                    "Consent.sourceAttachment",
                    "missing_element",
                    "name the signed form by `url` or `title` (the gateway keeps no document \
                     content)",
                ));
            }
        }
        (None, Some(r)) => {
            d.signature_reference = r
                .display
                .clone()
                .or_else(|| r.identifier.as_ref().and_then(|i| i.value.clone()))
                .or_else(|| r.reference.clone());
        }
        (None, None) => {}
    }

    // Resource-level extensions: the revocation statement (and, on PUT, a revocation).
    let mut revocation = None;
    for (i, e) in c.extension.iter().enumerate() {
        let url = ext_url(e).unwrap_or_default();
        if url == codes::revocation_statement_ext() {
            match ext_text(e) {
                Some(t) => d.revocation_statement = Some(t.to_owned()),
                None => problems.push(Problem::new(
                    format!("Consent.extension[{i}]"),
                    "invalid_structure",
                    "the revocation statement is a `valueString`",
                )),
            }
        } else if url == codes::revocation_ext() {
            revocation = Some(revocation_of(e, i, &mut problems));
        }
    }

    // provision.
    if let Some(p) = &c.provision {
        provision(p, &mut d, &mut problems);
    }

    if problems.is_empty() {
        Ok(ParsedConsent {
            directive: d,
            status: c.status,
            id: c.id,
            revocation,
        })
    } else {
        Err(problems)
    }
}

fn revocation_of(e: &Value, i: usize, problems: &mut Problems) -> RevocationStated {
    let mut out = RevocationStated {
        received_at: None,
        received_how: None,
        note: None,
    };
    let parts = e.get("extension").and_then(Value::as_array);
    for (j, part) in parts.into_iter().flatten().enumerate() {
        let at = format!("Consent.extension[{i}].extension[{j}]");
        match ext_url(part) {
            Some("receivedAt") => match part.get("valueDateTime").and_then(Value::as_str) {
                Some(s) => match parse_time(s, &at, false) {
                    Ok(t) => out.received_at = Some(t),
                    Err(p) => problems.push(p),
                },
                None => problems.push(Problem::new(
                    at,
                    "invalid_structure",
                    "`receivedAt` is a `valueDateTime`",
                )),
            },
            Some("receivedHow") => {
                let how = part.get("valueCode").and_then(Value::as_str);
                out.received_how = match how {
                    Some("written") => Some(ReceivedHow::Written),
                    Some("oral") => Some(ReceivedHow::Oral),
                    Some("electronic") => Some(ReceivedHow::Electronic),
                    _ => {
                        problems.push(Problem::new(
                            at,
                            "unknown_code",
                            "`receivedHow` is a `valueCode`: `written`, `oral` or `electronic`",
                        ));
                        None
                    }
                };
            }
            Some("note") => out.note = ext_text(part).map(str::to_owned),
            _ => problems.push(Problem::new(
                at,
                "unsupported_element",
                "the revocation extension holds `receivedAt`, `receivedHow` and `note`",
            )),
        }
    }
    out
}

fn provision(p: &ConsentProvision, d: &mut ConsentDirective, problems: &mut Problems) {
    match p.type_.as_deref() {
        Some("permit") => {}
        Some(other) => problems.push(Problem::new(
            "Consent.provision.type",
            "unsupported_value",
            format!(
                "the gateway records permits only, not `{other}`: a consent says what may flow; \
                 without one nothing that needs consent flows"
            ),
        )),
        None => problems.push(Problem::new(
            "Consent.provision.type",
            "missing_element",
            "`provision.type` must be `permit`",
        )),
    }
    if let Some(period) = &p.period {
        if let Some(s) = &period.start {
            match parse_time(s, "Consent.provision.period.start", false) {
                Ok(t) => d.valid_from = Some(t),
                Err(e) => problems.push(e),
            }
        }
        if let Some(s) = &period.end {
            match parse_time(s, "Consent.provision.period.end", true) {
                Ok(t) => d.expires = Some(t),
                Err(e) => problems.push(e),
            }
        }
    }
    for (i, e) in p.extension.iter().enumerate() {
        if ext_url(e) == Some(codes::expiry_event_ext().as_str()) {
            match ext_text(e) {
                Some(t) => d.expiry_event = Some(t.to_owned()),
                None => problems.push(Problem::new(
                    format!("Consent.provision.extension[{i}]"),
                    "invalid_structure",
                    "the expiration event is a `valueString`",
                )),
            }
        }
    }
    for (i, ConsentActor { role, reference }) in p.actor.iter().enumerate() {
        let at = format!("Consent.provision.actor[{i}]");
        let mut recipient = None;
        for (j, x) in role.coding.iter().enumerate() {
            let here = format!("{at}.role.coding[{j}]");
            match (x.system.as_deref(), x.code.as_deref()) {
                (Some(codes::PARTICIPATION_TYPE), Some("IRCP" | "PRCP")) => recipient = Some(true),
                (Some(codes::PARTICIPATION_TYPE), Some("CST")) => recipient = Some(false),
                (Some(codes::PARTICIPATION_TYPE), _) => problems.push(unknown_code(
                    &here,
                    x,
                    "consent actor role",
                    "`IRCP` (recipient) or `CST` (custodian, who discloses)",
                )),
                _ => problems.push(unknown_system(
                    &here,
                    x,
                    "actor roles",
                    &format!("`{}`", codes::PARTICIPATION_TYPE),
                )),
            }
        }
        let Some(is_recipient) = recipient else {
            if role.coding.is_empty() {
                problems.push(Problem::new(
                    format!("{at}.role"),
                    "missing_element",
                    "give the actor's role: v3-ParticipationType `IRCP` or `CST`",
                ));
            }
            continue;
        };
        match partner_of(reference, &format!("{at}.reference")) {
            Ok(partner) => {
                if is_recipient {
                    d.recipients.insert(partner);
                } else {
                    d.disclosers.insert(partner);
                }
            }
            Err(e) => problems.push(e),
        }
    }
    for (i, a) in p.action.iter().enumerate() {
        for (j, x) in a.coding.iter().enumerate() {
            let at = format!("Consent.provision.action[{i}].coding[{j}]");
            match code_in(x, CONSENT_ACTION) {
                Some("disclose" | "access") => {}
                Some(_) => problems.push(unknown_code(
                    &at,
                    x,
                    "consent action",
                    "`disclose` or `access`: the gateway records consents to disclose",
                )),
                None => problems.push(unknown_system(
                    &at,
                    x,
                    "actions",
                    &format!("`{CONSENT_ACTION}`"),
                )),
            }
        }
    }
    for (i, x) in p.security_label.iter().enumerate() {
        let at = format!("Consent.provision.securityLabel[{i}]");
        let accepted = "v3-ActCode `ETH`, `SUD`, `PSY` or the gateway's labels";
        let label = match x.system.as_deref() {
            Some(ACT_CODE) => match x.code.as_deref().and_then(codes::label_of_hl7) {
                Some(l) => Some(l),
                None => {
                    problems.push(unknown_code(&at, x, "sensitivity", accepted));
                    None
                }
            },
            Some(s) if s == codes::label_system() => match x.code.as_deref().and_then(Label::parse)
            {
                Some(l) => Some(l),
                None => {
                    problems.push(unknown_code(&at, x, "sensitivity category", accepted));
                    None
                }
            },
            _ => {
                problems.push(unknown_system(&at, x, "security labels", accepted));
                None
            }
        };
        if let Some(l) = label {
            d.scope.categories.insert(l);
        }
    }
    for (i, x) in p.purpose.iter().enumerate() {
        let at = format!("Consent.provision.purpose[{i}]");
        let code = x.code.as_deref().unwrap_or_default();
        let purpose = match x.system.as_deref() {
            Some(ACT_REASON) => codes::purpose_of_hl7(code).map(str::to_owned).ok_or_else(|| {
                let mapped: Vec<String> = codes::HL7_PURPOSES
                    .iter()
                    .map(|(p, c, _)| format!("{c} ({p})"))
                    .collect();
                Problem::new(
                    &at,
                    "unknown_purpose",
                    format!(
                        "no purpose of use of the gateway corresponds to v3-ActReason `{code}`; \
                         mapped codes: {}; the others are in `{}`",
                        mapped.join(", "),
                        codes::purpose_system()
                    ),
                )
            }),
            Some(s) if s == codes::purpose_system() => {
                if is_known_purpose(code) {
                    Ok(code.to_owned())
                } else {
                    Err(Problem::new(
                        &at,
                        "unknown_purpose",
                        format!("`{code}` is not a purpose of use of the gateway"),
                    ))
                }
            }
            _ => Err(unknown_system(
                &at,
                x,
                "purposes of use",
                &format!("`{ACT_REASON}` or `{}`", codes::purpose_system()),
            )),
        };
        match purpose.and_then(|p| {
            p.parse::<Purpose>()
                .map_err(|e| Problem::new(&at, "unknown_purpose", format!("{e}")))
        }) {
            Ok(p) => {
                d.purposes.insert(p);
            }
            Err(e) => problems.push(e),
        }
    }
    for (i, x) in p.class.iter().enumerate() {
        let at = format!("Consent.provision.class[{i}]");
        match code_in(x, &codes::kind_system()) {
            Some(kind) => {
                d.scope.kinds.insert(kind.to_owned());
            }
            None => problems.push(unknown_system(
                &at,
                x,
                "classes of information",
                &format!("record kinds in `{}`", codes::kind_system()),
            )),
        }
    }
    for (i, cc) in p.code.iter().enumerate() {
        let at = format!("Consent.provision.code[{i}]");
        let fields: Vec<&str> = cc
            .coding
            .iter()
            .filter_map(|x| code_in(x, &codes::field_system()))
            .collect();
        match (fields.as_slice(), cc.coding.len()) {
            ([f], 1) => {
                d.scope.fields.insert((*f).to_owned());
            }
            _ => problems.push(Problem::new(
                format!("{at}.coding"),
                if cc
                    .coding
                    .iter()
                    .all(|x| x.system.as_deref() == Some(codes::field_system().as_str()))
                {
                    "invalid_structure"
                } else {
                    "unknown_code_system"
                },
                format!(
                    "each `provision.code` names one record field `kind.field` in `{}`",
                    codes::field_system()
                ),
            )),
        }
    }
}

/// The FHIRPath of a directive field named in a validation problem or a missing element.
pub fn path_of(field: &str) -> &'static str {
    match field.split('.').next().unwrap_or_default() {
        "subjects" => "Consent.patient",
        "patient_name" => "Consent.patient.display",
        "disclosers" => "Consent.organization",
        "recipients" => "Consent.provision.actor",
        "purposes" => "Consent.provision.purpose",
        "scope" => match field {
            "scope.kinds" => "Consent.provision.class",
            "scope.categories" => "Consent.provision.securityLabel",
            "scope.fields" => "Consent.provision.code",
            _ => "Consent.provision",
        },
        "valid_from" => "Consent.provision.period.start",
        "expires" => "Consent.provision.period.end",
        "expiration" | "expiry_event" => "Consent.provision.period.end",
        "signature_reference" => "Consent.source[x]",
        "signed_on" => "Consent.dateTime",
        "revocation_statement" => "Consent.extension",
        "received_at" | "received_how" | "note" => "Consent.extension",
        _ => "Consent",
    }
}

/// What to supply for a missing element, in FHIR terms.
pub fn fhir_hint(e: Element) -> String {
    match e {
        Element::Subjects => "the person's identifier in `patient.identifier`".into(),
        Element::PatientName => {
            "the patient's name as on the signed form, in `patient.display` (or the contained \
             Patient's name)"
                .into()
        }
        Element::Disclosers => {
            "who may disclose: `organization`, or `provision.actor` with role `CST`".into()
        }
        Element::Scope => {
            "what information, described specifically: `provision.class` (record kinds) with \
             `provision.securityLabel` `ETH`, or the fields in `provision.code`"
                .into()
        }
        Element::Recipients => "the recipients by name: `provision.actor` with role `IRCP`".into(),
        Element::Purposes => "the purposes in `provision.purpose`".into(),
        Element::RevocationStatement => format!(
            "the statement of the right to revoke and how, in extension `{}`",
            codes::revocation_statement_ext()
        ),
        Element::Expiration => format!(
            "an expiration date in `provision.period.end`, or an event in extension `{}`",
            codes::expiry_event_ext()
        ),
        Element::SignatureReference => {
            "the signed form, in `sourceReference` or `sourceAttachment`".into()
        }
        Element::SignedOn => "the date signed, in `dateTime`".into(),
    }
}

/// The FHIR status of a recorded consent (`rejected` for revoked, `inactive` for expired).
pub fn fhir_status(status: &str) -> &'static str {
    match status {
        "revoked" => "rejected",
        "expired" => "inactive",
        _ => "active",
    }
}

/// Renders a recorded consent as a FHIR `Consent`; parsing the result gives the same directive.
pub fn render(v: &ConsentView, policy: &PolicySet) -> model::Consent {
    let d = &v.directive;
    let mut contained = Vec::new();
    let first = d.subjects.first().map(subject_identifier);
    let patient = if d.subjects.len() > 1 {
        contained.push(model::to_value(&Patient {
            resource_type: "Patient".into(),
            id: Some("patient".into()),
            identifier: d.subjects.iter().map(subject_identifier).collect(),
            name: d
                .patient_name
                .iter()
                .map(|n| HumanName {
                    text: Some(n.clone()),
                    ..HumanName::default()
                })
                .collect(),
            telecom: Vec::new(),
        }));
        Reference {
            reference: Some("#patient".into()),
            type_: Some("Patient".into()),
            identifier: first,
            display: d.patient_name.clone(),
        }
    } else {
        Reference {
            reference: None,
            type_: Some("Patient".into()),
            identifier: first,
            display: d.patient_name.clone(),
        }
    };
    let name_of = |p: &PartnerId| policy.partners.get(p).map(|x| x.display_name.clone());
    let mut category = vec![
        CodeableConcept::of(Coding::new(
            codes::LOINC,
            "64292-6",
            "Release of information consent",
        )),
        CodeableConcept::of(Coding::new(ACT_CODE, "IDSCL", "information disclosure")),
    ];
    if v.part2 {
        category.push(CodeableConcept::of(Coding::new(
            ACT_CODE,
            "42CFRPart2CD",
            "42 CFR Part 2 consent directive",
        )));
    }
    let mut actor: Vec<ConsentActor> = d
        .disclosers
        .iter()
        .map(|p| ConsentActor {
            role: CodeableConcept::of(Coding::new(codes::PARTICIPATION_TYPE, "CST", "custodian")),
            reference: partner_ref(p.as_str(), name_of(p).as_deref()),
        })
        .collect();
    actor.extend(d.recipients.iter().map(|p| ConsentActor {
        role: CodeableConcept::of(Coding::new(
            codes::PARTICIPATION_TYPE,
            "IRCP",
            "information recipient",
        )),
        reference: partner_ref(p.as_str(), name_of(p).as_deref()),
    }));
    let mut extension = Vec::new();
    if let Some(s) = &d.revocation_statement {
        extension.push(model::to_value(&Extension::string(
            &codes::revocation_statement_ext(),
            s,
        )));
    }
    extension.push(model::to_value(&Extension::code(
        &codes::consent_status_ext(),
        v.status,
    )));
    if let Some(r) = v.history.iter().rev().find_map(|e| e.revocation.as_ref()) {
        let mut ext = Extension::new(&codes::revocation_ext());
        ext.extension.push(Extension::date_time(
            "receivedAt",
            &format_time(r.received_at),
        ));
        let how = match r.received_how {
            ReceivedHow::Written => "written",
            ReceivedHow::Oral => "oral",
            ReceivedHow::Electronic => "electronic",
        };
        ext.extension.push(Extension::code("receivedHow", how));
        if let Some(n) = &r.note {
            ext.extension.push(Extension::string("note", n));
        }
        extension.push(model::to_value(&ext));
    }
    let mut provision_ext = Vec::new();
    if let Some(ev) = &d.expiry_event {
        provision_ext.push(model::to_value(&Extension::string(
            &codes::expiry_event_ext(),
            ev,
        )));
    }
    let security_label = d
        .scope
        .categories
        .iter()
        .map(|l| match codes::hl7_sensitivity(*l) {
            Some((code, display)) => Coding::new(ACT_CODE, code, display),
            None => Coding::new(&codes::label_system(), l.as_str(), ""),
        })
        .collect();
    let mut meta_security = vec![Coding::new(codes::CONFIDENTIALITY, "R", "restricted")];
    if v.part2 {
        meta_security.push(Coding::new(
            ACT_CODE,
            "ETH",
            "substance abuse information sensitivity",
        ));
        meta_security.push(Coding::new(ACT_CODE, "42CFRPart2", "42 CFR Part2"));
    }
    model::Consent {
        resource_type: "Consent".into(),
        id: model::is_fhir_id(&v.id).then(|| v.id.clone()),
        meta: Some(Meta {
            last_updated: Some(format_time(v.history.last().map_or(v.created_at, |e| e.at))),
            security: meta_security,
            ..Meta::default()
        }),
        contained,
        extension,
        identifier: vec![Identifier::new(&codes::gw("sid/consent"), &v.id)],
        status: Some(fhir_status(v.status).to_owned()),
        scope: Some(CodeableConcept::of(Coding::new(
            CONSENT_SCOPE,
            "patient-privacy",
            "Privacy Consent",
        ))),
        category,
        patient: Some(patient),
        date_time: d.signed_on.map(|s| s.format("%Y-%m-%d").to_string()),
        organization: vec![partner_ref(
            v.collected_by.as_str(),
            name_of(&v.collected_by).as_deref(),
        )],
        source_reference: d.signature_reference.as_ref().map(|s| Reference {
            display: Some(s.clone()),
            ..Reference::default()
        }),
        policy_rule: Some(CodeableConcept::of(Coding::new(
            ACT_CODE, "OPTIN", "opt-in",
        ))),
        provision: Some(ConsentProvision {
            extension: provision_ext,
            type_: Some("permit".into()),
            period: Some(Period {
                start: d.valid_from.map(format_time),
                end: d.expires.map(format_time),
            }),
            actor,
            action: vec![CodeableConcept::of(Coding::new(
                CONSENT_ACTION,
                "disclose",
                "Disclose",
            ))],
            security_label,
            purpose: d
                .purposes
                .iter()
                .map(|p| {
                    let (system, code, display) = codes::purpose_coding(p.as_str());
                    Coding::new(&system, &code, &display)
                })
                .collect(),
            class: d
                .scope
                .kinds
                .iter()
                .map(|k| Coding::new(&codes::kind_system(), k, ""))
                .collect(),
            code: d
                .scope
                .fields
                .iter()
                .map(|f| CodeableConcept::of(Coding::new(&codes::field_system(), f, "")))
                .collect(),
        }),
        ..model::Consent::default()
    }
}
