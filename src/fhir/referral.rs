//! FHIR `ServiceRequest` to a new referral.
//!
//! Police systems send a referral as a `ServiceRequest`: the person as `subject`, the crisis
//! incident in `supportingInfo` (by identifier), the receiving mental-health agency as
//! `performer`, the reason in `reasonCode.text`, the urgency as `priority`. [`parse`] turns it
//! into the [`NewReferral`] that `POST /v1/referrals` takes; the referral service then checks
//! the incident, the agency and the record schema exactly as for `/v1`. The referral is read
//! back as a `Task` ([`super::disclosure`]).
//!
//! Security role: a `ServiceRequest` element the mapping does not take (a note, an occurrence,
//! a modifier extension) is refused, not dropped, and the referring agency comes from the
//! caller's token, never from the resource's `requester`.

use serde_json::Value;

use super::codes;
use super::consent::person;
use super::model::ServiceRequest;
use super::{Problem, Problems, partner_of, read_resource};
use crate::service::referrals::{INCIDENT_KIND, NewReferral};

/// Parses a FHIR `ServiceRequest` into a new referral; every problem of the FHIR form at once.
pub fn parse(value: Value) -> Result<NewReferral, Problems> {
    let sr: ServiceRequest = read_resource(value, "ServiceRequest")?;
    let mut problems = Problems::new();
    match sr.status.as_deref() {
        Some("active") => {}
        Some(other) => problems.push(Problem::new(
            "ServiceRequest.status",
            "unsupported_value",
            format!("a referral is sent with status `active`, not `{other}`"),
        )),
        None => problems.push(Problem::new(
            "ServiceRequest.status",
            "missing_element",
            "`status` is required: `active`",
        )),
    }
    match sr.intent.as_deref() {
        Some("order") => {}
        Some(other) => problems.push(Problem::new(
            "ServiceRequest.intent",
            "unsupported_value",
            format!("a referral has intent `order`, not `{other}`"),
        )),
        None => problems.push(Problem::new(
            "ServiceRequest.intent",
            "missing_element",
            "`intent` is required: `order`",
        )),
    }
    let urgency = match sr.priority.as_deref() {
        None => "ROUTINE".to_owned(),
        Some(p) => codes::urgency_of_priority(p).map_or_else(
            || {
                problems.push(Problem::new(
                    "ServiceRequest.priority",
                    "unsupported_value",
                    format!(
                        "`{p}` has no referral urgency: use `routine` (ROUTINE), `urgent` \
                         (URGENT) or `stat` (EMERGENT)"
                    ),
                ));
                String::new()
            },
            str::to_owned,
        ),
    };
    let (subjects, subject_name, subject_phone) = match &sr.subject {
        Some(r) => {
            let p = person(
                r,
                &sr.contained,
                "ServiceRequest.subject",
                "ServiceRequest",
                &mut problems,
            );
            (p.subjects, p.name, p.phone)
        }
        None => {
            problems.push(Problem::new(
                "ServiceRequest.subject",
                "missing_element",
                "`subject` is required: the person, by identifier",
            ));
            (Vec::new(), None, None)
        }
    };
    let receiving_agency = match sr.performer.as_slice() {
        [one] => match partner_of(one, "ServiceRequest.performer[0]") {
            Ok(p) => p.to_string(),
            Err(e) => {
                problems.push(e);
                String::new()
            }
        },
        _ => {
            problems.push(Problem::new(
                "ServiceRequest.performer",
                "missing_element",
                "name exactly one receiving agency in `performer`",
            ));
            String::new()
        }
    };
    let reason = match sr.reason_code.as_slice() {
        [one] if one.text.as_deref().is_some_and(|t| !t.trim().is_empty()) => {
            one.text.clone().unwrap_or_default()
        }
        _ => {
            problems.push(Problem::new(
                "ServiceRequest.reasonCode",
                "missing_element",
                "give the reason for the referral as one `reasonCode` with `text`",
            ));
            String::new()
        }
    };
    let incident_system = codes::record_system(INCIDENT_KIND);
    let mut incident_id = None;
    let mut consent_reference = None;
    for (i, r) in sr.supporting_info.iter().enumerate() {
        let at = format!("ServiceRequest.supportingInfo[{i}]");
        if let Some(lit) = &r.reference {
            match lit.strip_prefix("Consent/") {
                Some(id) if super::model::is_fhir_id(id) && consent_reference.is_none() => {
                    consent_reference = Some(id.to_owned());
                }
                _ => problems.push(Problem::new(
                    format!("{at}.reference"),
                    "invalid_reference",
                    format!(
                        "`{}` is not a reference the gateway resolves: reference a consent as \
                         `Consent/<id>` (once), and the incident by identifier",
                        lit.chars().take(64).collect::<String>()
                    ),
                )),
            }
            continue;
        }
        match &r.identifier {
            Some(id) if id.system.as_deref() == Some(incident_system.as_str()) => {
                if incident_id.is_some() {
                    problems.push(Problem::new(
                        at,
                        "unsupported_value",
                        "a referral comes from one incident",
                    ));
                } else {
                    incident_id = id.value.clone();
                }
            }
            Some(id) => problems.push(Problem::new(
                format!("{at}.identifier.system"),
                "unknown_code_system",
                format!(
                    "the incident is identified in `{incident_system}`, not `{}`",
                    id.system.as_deref().unwrap_or("(none)")
                ),
            )),
            None => problems.push(Problem::new(
                at,
                "invalid_reference",
                "name the incident by `identifier`",
            )),
        }
    }
    let incident_id = incident_id.unwrap_or_else(|| {
        problems.push(Problem::new(
            "ServiceRequest.supportingInfo",
            "missing_element",
            format!("name the crisis incident in `supportingInfo` by identifier (system `{incident_system}`)"),
        ));
        String::new()
    });
    if problems.is_empty() {
        Ok(NewReferral {
            incident_id,
            subjects,
            receiving_agency,
            reason,
            urgency,
            consent_reference,
            subject_name,
            subject_phone,
        })
    } else {
        Err(problems)
    }
}
