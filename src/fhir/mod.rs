//! HL7 FHIR R4: another representation of the same consents, referrals and disclosures.
//!
//! This module maps FHIR resources to the inputs of the services (a FHIR `Consent` to a
//! [`ConsentDirective`](crate::consent::directive::ConsentDirective), a `ServiceRequest` to a
//! [`NewReferral`](crate::service::referrals::NewReferral)) and the services' answers back to
//! FHIR (`Consent`, `Task`, `Basic`, `Provenance`, `Bundle`). It holds no rule of its own: a
//! directive parsed from FHIR is validated, stored and logged by exactly the functions that
//! serve `/v1`, and a disclosure rendered as FHIR is the very answer the read service produced
//! (the same decision, the same log entry, the same fields), relabelled.
//!
//! Security role: the mapping refuses what it does not understand (unknown elements, code
//! systems, codes, references) with a problem naming the element, instead of dropping it; it
//! never widens a consent. What leaves carries DS4P security labels derived from the labels of
//! the fields actually disclosed ([`disclosure`]), and a `Provenance` naming the disclosure-log
//! entry.

pub mod codes;
pub mod consent;
pub mod disclosure;
pub mod model;
pub mod referral;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One problem with a FHIR resource, named by its FHIRPath.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where, e.g. `Consent.provision.purpose[0]`.
    pub field: String,
    /// A stable code, e.g. `unknown_code_system`.
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    /// A problem at `field`.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Collected problems.
pub type Problems = Vec<Problem>;

/// Reads `value` as a resource of type `expected` (`T` refuses unknown members): a resource of
/// another type, an element the gateway does not support, or a value of the wrong shape is one
/// problem naming the element.
pub fn read_resource<T: DeserializeOwned>(value: Value, expected: &str) -> Result<T, Problems> {
    match value.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == expected => {}
        Some(other) => {
            return Err(vec![Problem::new(
                "resourceType",
                "wrong_resource_type",
                format!(
                    "this endpoint takes a `{expected}` resource, not `{}`",
                    other.chars().take(64).collect::<String>()
                ),
            )]);
        }
        None => {
            return Err(vec![Problem::new(
                "resourceType",
                "wrong_resource_type",
                format!("the body must be a FHIR `{expected}` resource with `resourceType`"),
            )]);
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let (code, message) = if let Some(rest) = inner.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or_default();
            let at = if path == "." {
                format!("{expected}.{name}")
            } else {
                format!("{expected}.{path}.{name}")
            };
            (
                "unsupported_element",
                format!(
                    "the gateway does not support element `{at}`; it refuses what it cannot keep \
                     rather than drop it (see the README's FHIR mapping tables)"
                ),
            )
        } else {
            ("invalid_structure", inner.to_string())
        };
        let field = if path == "." {
            expected.to_owned()
        } else {
            format!("{expected}.{path}")
        };
        vec![Problem::new(field, code, message)]
    })
}

/// Whether a coding's system is `system` and its code is present.
pub(crate) fn code_in<'a>(c: &'a model::Coding, system: &str) -> Option<&'a str> {
    (c.system.as_deref() == Some(system))
        .then_some(c.code.as_deref())
        .flatten()
}

/// A reference to a partner agency by identifier.
pub fn partner_ref(id: &str, display: Option<&str>) -> model::Reference {
    model::Reference {
        reference: None,
        type_: Some("Organization".to_owned()),
        identifier: Some(model::Identifier::new(&codes::partner_system(), id)),
        display: display.map(str::to_owned),
    }
}

/// The partner id a reference names, or the problem with it. Partners are named by
/// identifier (system [`codes::partner_system`]); the gateway serves no `Organization`
/// resources, so a literal reference is refused.
pub fn partner_of(r: &model::Reference, at: &str) -> Result<crate::domain::PartnerId, Problem> {
    if r.reference.is_some() {
        return Err(Problem::new(
            format!("{at}.reference"),
            "invalid_reference",
            format!(
                "name the partner agency by identifier (`{{\"identifier\": {{\"system\": \"{}\", \
                 \"value\": \"<partner id>\"}}}}`): the gateway holds no Organization resources",
                codes::partner_system()
            ),
        ));
    }
    let Some(id) = &r.identifier else {
        return Err(Problem::new(
            at,
            "invalid_reference",
            format!(
                "the reference names no partner: give `identifier` with system `{}`",
                codes::partner_system()
            ),
        ));
    };
    if id.system.as_deref() != Some(codes::partner_system().as_str()) {
        return Err(Problem::new(
            format!("{at}.identifier.system"),
            "unknown_code_system",
            format!(
                "partner agencies are identified in system `{}`, not `{}`",
                codes::partner_system(),
                id.system.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    id.value
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| {
            Problem::new(
                format!("{at}.identifier.value"),
                "invalid_reference",
                format!("{e}"),
            )
        })
}
