//! The `Purpose-Of-Use` header and, for purpose `emergency`, the emergency headers.
//!
//! Every read of shared records states its purpose. An emergency read (HIPAA 164.512(j)) also
//! states its good-faith basis and the threat:
//!
//! - `Emergency-Basis: actual-knowledge` or `credible-representation`;
//! - `Emergency-Source: <who made the representation>` (required with
//!   `credible-representation`);
//! - `Emergency-Description: <the serious and imminent threat>`.
//!
//! A bona fide medical emergency (42 CFR 2.51), in which Part 2 information may go to medical
//! personnel, is stated instead with:
//!
//! - `Emergency-Basis: medical-emergency`;
//! - `Emergency-Personnel: <the name of the medical personnel receiving>` (2.51(c)(1));
//! - `Emergency-Description: <the nature of the emergency>` (2.51(c)(4)).
//!
//! A missing or unknown purpose, a missing emergency header, an emergency header sent with
//! another purpose, or any of these headers sent more than once is a 400 naming the header.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde_json::json;

use crate::domain::Code;
use crate::domain::Purpose;
use crate::error::ApiError;
use crate::policy::model::{EMERGENCY_PURPOSE, is_known_purpose};
use crate::policy::{EmergencyAssertion, MedicalEmergency, PURPOSES};

/// The purpose header.
pub const PURPOSE_OF_USE: &str = "Purpose-Of-Use";
/// The emergency basis header.
pub const EMERGENCY_BASIS: &str = "Emergency-Basis";
/// The emergency source header.
pub const EMERGENCY_SOURCE: &str = "Emergency-Source";
/// The emergency description header.
pub const EMERGENCY_DESCRIPTION: &str = "Emergency-Description";
/// The medical personnel's name, for a 42 CFR 2.51 medical emergency.
pub const EMERGENCY_PERSONNEL: &str = "Emergency-Personnel";
/// The `Emergency-Basis` of a 42 CFR 2.51 medical emergency.
pub const MEDICAL_EMERGENCY: &str = "medical-emergency";
const EMERGENCY: &str = EMERGENCY_PURPOSE;
/// Longest emergency source or description, in characters.
pub(super) const MAX_EMERGENCY_TEXT: usize = 1000;

/// The stated purpose, and the emergency assertion when the purpose is `emergency`.
#[derive(Debug, Clone)]
pub struct PurposeOfUse {
    /// The purpose.
    pub purpose: Purpose,
    /// The emergency assertion (purpose `emergency` only).
    pub emergency: Option<EmergencyAssertion>,
    /// A stated 42 CFR 2.51 medical emergency (purpose `emergency` only).
    pub medical: Option<MedicalEmergency>,
}

impl PurposeOfUse {
    /// Who asks, and why: the read services' input.
    pub fn asker<'a>(&'a self, caller: crate::service::Caller<'a>) -> crate::service::Asker<'a> {
        crate::service::Asker {
            caller,
            purpose: &self.purpose,
            emergency: self.emergency.as_ref(),
            medical: self.medical.as_ref(),
        }
    }
}

impl FromRequest for PurposeOfUse {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req))
    }
}

fn header<'a>(req: &'a HttpRequest, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    let mut sent = req.headers().get_all(name);
    let Some(v) = sent.next() else {
        return Ok(None);
    };
    if sent.next().is_some() {
        return Err(bad_header(
            name,
            "is sent more than once; state it once (two values would leave the basis of the \
             disclosure ambiguous)",
        ));
    }
    let s = v
        .to_str()
        .map_err(|_| bad_header(name, "must be visible ASCII text"))?
        .trim();
    Ok((!s.is_empty()).then_some(s))
}

fn bad_header(name: &'static str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: Code::InvalidHeader,
        message: format!("header `{name}` {why}"),
        details: Some(json!({ "header": name })),
    }
}

fn missing(name: &'static str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: Code::HeaderMissing,
        message: format!("header `{name}` is required: {why}"),
        details: Some(json!({ "header": name })),
    }
}

fn parse(req: &HttpRequest) -> Result<PurposeOfUse, ApiError> {
    let names: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
    let purposes = names.join(", ");
    let raw = header(req, PURPOSE_OF_USE)?.ok_or_else(|| {
        missing(
            PURPOSE_OF_USE,
            format!("state why you ask, one of: {purposes}"),
        )
    })?;
    let purpose: Purpose = raw
        .parse()
        .ok()
        .filter(|p: &Purpose| is_known_purpose(p.as_str()))
        .ok_or_else(|| ApiError::BadRequest {
            code: Code::UnknownPurpose,
            message: format!("unknown purpose of use `{raw}`; use one of: {purposes}"),
            details: Some(json!({ "header": PURPOSE_OF_USE, "allowed": names })),
        })?;
    let basis = header(req, EMERGENCY_BASIS)?;
    let source = header(req, EMERGENCY_SOURCE)?;
    let description = header(req, EMERGENCY_DESCRIPTION)?;
    let personnel = header(req, EMERGENCY_PERSONNEL)?;
    if purpose.as_str() != EMERGENCY {
        for (name, v) in [
            (EMERGENCY_BASIS, basis),
            (EMERGENCY_SOURCE, source),
            (EMERGENCY_DESCRIPTION, description),
            (EMERGENCY_PERSONNEL, personnel),
        ] {
            if v.is_some() {
                return Err(bad_header(
                    name,
                    format!("is only for `{PURPOSE_OF_USE}: {EMERGENCY}`"),
                ));
            }
        }
        return Ok(PurposeOfUse {
            purpose,
            emergency: None,
            medical: None,
        });
    }
    let basis = basis.ok_or_else(|| {
        missing(
            EMERGENCY_BASIS,
            "state the good-faith basis (HIPAA 164.512(j)(4)): `actual-knowledge` or \
             `credible-representation`; or `medical-emergency` for a bona fide medical \
             emergency (42 CFR 2.51)",
        )
    })?;
    let long = |name, v: &str| {
        if v.chars().count() > MAX_EMERGENCY_TEXT {
            Err(bad_header(
                name,
                format!("must be at most {MAX_EMERGENCY_TEXT} characters"),
            ))
        } else {
            Ok(())
        }
    };
    if basis == MEDICAL_EMERGENCY {
        if source.is_some() {
            return Err(bad_header(
                EMERGENCY_SOURCE,
                format!("is for a HIPAA 164.512(j) assertion, not `{MEDICAL_EMERGENCY}`"),
            ));
        }
        let personnel = personnel.ok_or_else(|| {
            missing(
                EMERGENCY_PERSONNEL,
                "name the medical personnel the information is disclosed to (42 CFR \
                 2.51(c)(1))",
            )
        })?;
        long(EMERGENCY_PERSONNEL, personnel)?;
        let nature = description.ok_or_else(|| {
            missing(
                EMERGENCY_DESCRIPTION,
                "describe the nature of the medical emergency (42 CFR 2.51(c)(4))",
            )
        })?;
        long(EMERGENCY_DESCRIPTION, nature)?;
        return Ok(PurposeOfUse {
            purpose,
            emergency: None,
            medical: Some(MedicalEmergency {
                personnel: personnel.to_owned(),
                nature: nature.to_owned(),
            }),
        });
    }
    if personnel.is_some() {
        return Err(bad_header(
            EMERGENCY_PERSONNEL,
            format!("is only for `{EMERGENCY_BASIS}: {MEDICAL_EMERGENCY}`"),
        ));
    }
    let stated = match basis {
        "actual-knowledge" => {
            if let Some(s) = source {
                long(EMERGENCY_SOURCE, s)?;
            }
            source.map_or_else(
                || "actual-knowledge".to_owned(),
                |s| format!("actual-knowledge; source: {s}"),
            )
        }
        "credible-representation" => {
            let s = source.ok_or_else(|| {
                missing(
                    EMERGENCY_SOURCE,
                    "a credible representation needs its source (who made it)",
                )
            })?;
            long(EMERGENCY_SOURCE, s)?;
            format!("credible-representation; source: {s}")
        }
        other => {
            return Err(bad_header(
                EMERGENCY_BASIS,
                format!(
                    "must be `actual-knowledge`, `credible-representation` or \
                     `{MEDICAL_EMERGENCY}`, not `{other}`"
                ),
            ));
        }
    };
    let threat = description.ok_or_else(|| {
        missing(
            EMERGENCY_DESCRIPTION,
            "describe the serious and imminent threat the disclosure is to prevent or lessen",
        )
    })?;
    long(EMERGENCY_DESCRIPTION, threat)?;
    Ok(PurposeOfUse {
        purpose,
        emergency: Some(EmergencyAssertion {
            basis: stated,
            threat: threat.to_owned(),
        }),
        medical: None,
    })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn run(headers: &[(&'static str, &str)]) -> Result<PurposeOfUse, ApiError> {
        let mut r = TestRequest::default();
        for (k, v) in headers {
            r = r.append_header((*k, *v));
        }
        parse(&r.to_http_request())
    }

    fn header_named(e: &ApiError) -> String {
        match e {
            ApiError::BadRequest { details, .. } => details.as_ref().unwrap()["header"]
                .as_str()
                .unwrap()
                .to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn purpose_is_required_and_known() {
        assert_eq!(header_named(&run(&[]).unwrap_err()), PURPOSE_OF_USE);
        let e = run(&[(PURPOSE_OF_USE, "curiosity")]).unwrap_err();
        assert_eq!(e.code(), Code::UnknownPurpose);
        let ok = run(&[(PURPOSE_OF_USE, "treatment")]).unwrap();
        assert_eq!(ok.purpose.as_str(), "treatment");
        assert!(ok.emergency.is_none());
    }

    #[test]
    fn emergency_needs_every_header() {
        let e = run(&[(PURPOSE_OF_USE, EMERGENCY)]).unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_BASIS);
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, "credible-representation"),
            (EMERGENCY_DESCRIPTION, "threat"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_SOURCE);
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, "actual-knowledge"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_DESCRIPTION);
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, "hunch"),
            (EMERGENCY_DESCRIPTION, "x"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_BASIS);
        let ok = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, "credible-representation"),
            (EMERGENCY_SOURCE, "caller's sister"),
            (EMERGENCY_DESCRIPTION, "armed, threatening self-harm"),
        ])
        .unwrap();
        let em = ok.emergency.unwrap();
        assert!(em.basis.contains("caller's sister"), "{em:?}");
        assert_eq!(em.threat, "armed, threatening self-harm");
    }

    #[test]
    fn a_medical_emergency_needs_the_personnel_and_the_nature() {
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, MEDICAL_EMERGENCY),
            (EMERGENCY_DESCRIPTION, "overdose, unresponsive"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_PERSONNEL);
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, MEDICAL_EMERGENCY),
            (EMERGENCY_PERSONNEL, "Dr. A. Rivera"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_DESCRIPTION);
        let ok = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, MEDICAL_EMERGENCY),
            (EMERGENCY_PERSONNEL, "Dr. A. Rivera"),
            (EMERGENCY_DESCRIPTION, "overdose, unresponsive"),
        ])
        .unwrap();
        assert!(ok.emergency.is_none());
        let m = ok.medical.unwrap();
        assert_eq!(m.personnel, "Dr. A. Rivera");
        assert_eq!(m.nature, "overdose, unresponsive");
        // The personnel header belongs to a medical emergency only.
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, "actual-knowledge"),
            (EMERGENCY_PERSONNEL, "Dr. A. Rivera"),
            (EMERGENCY_DESCRIPTION, "x"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_PERSONNEL);
        let e = run(&[
            (PURPOSE_OF_USE, "treatment"),
            (EMERGENCY_PERSONNEL, "Dr. A. Rivera"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_PERSONNEL);
    }

    #[test]
    fn a_header_sent_twice_is_refused_by_name() {
        let e = run(&[(PURPOSE_OF_USE, "treatment"), (PURPOSE_OF_USE, "treatment")]).unwrap_err();
        assert_eq!(e.code(), Code::InvalidHeader);
        assert_eq!(header_named(&e), PURPOSE_OF_USE);
        let e = run(&[
            (PURPOSE_OF_USE, EMERGENCY),
            (EMERGENCY_BASIS, "actual-knowledge"),
            (EMERGENCY_DESCRIPTION, "armed"),
            (EMERGENCY_DESCRIPTION, "not armed"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_DESCRIPTION);
    }

    #[test]
    fn emergency_headers_need_the_emergency_purpose() {
        let e = run(&[
            (PURPOSE_OF_USE, "treatment"),
            (EMERGENCY_BASIS, "actual-knowledge"),
        ])
        .unwrap_err();
        assert_eq!(header_named(&e), EMERGENCY_BASIS);
    }
}
