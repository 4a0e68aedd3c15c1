//! `Consent` under `/fhir/r4`: recorded, read, searched and revoked through the consent
//! services, as on `/v1/consents`; a refused consent is logged as there.

use super::*;

fn consent_id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}

/// Moves the directive fields a consent-service refusal names to their FHIR paths, and turns
/// missing 42 CFR 2.31 elements into one problem each, in FHIR terms.
fn consent_error(e: crate::service::Error) -> ApiError {
    use crate::service::Error as E;
    match e {
        E::Invalid {
            code,
            message,
            details: Some(mut details),
        } => {
            if let Some(problems) = details.get_mut("problems").and_then(Value::as_array_mut) {
                for p in problems {
                    let path = p
                        .get("field")
                        .and_then(Value::as_str)
                        .map(fhirmap::consent::path_of);
                    if let Some(path) = path {
                        set(p, "field", json!(path));
                    }
                }
            }
            if code == Code::ConsentIncomplete {
                let part2 = details
                    .get("part2")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let missing: Vec<Value> = details
                    .get("missing")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(element_named)
                    .map(|el| {
                        let paragraph = if part2 { el.paragraph() } else { None };
                        let hint = fhirmap::consent::fhir_hint(el);
                        json!({
                            "field": fhirmap::consent::path_of(el.name()),
                            "code": el.name(),
                            "message": match paragraph {
                                Some(p) => format!("missing `{}` (42 CFR {p}): {hint}", el.name()),
                                None => format!("missing `{}`: {hint}", el.name()),
                            },
                        })
                    })
                    .collect();
                set(&mut details, "problems", json!(missing));
            } else if let Some(field) = details.get("field").and_then(Value::as_str) {
                let path = fhirmap::consent::path_of(field);
                set(&mut details, "field", json!(path));
            }
            ApiError::from(E::Invalid {
                code,
                message,
                details: Some(details),
            })
        }
        other => other.into(),
    }
}

fn element_named(name: &str) -> Option<crate::consent::directive::Element> {
    use crate::consent::directive::Element;
    std::iter::once(Element::Subjects)
        .chain(Element::PART2)
        .find(|e| e.name() == name)
}

/// A consent request refused before the consent services (a body that does not arrive, parse
/// or map): logged as on `/v1`, a `consent_changed` denial naming the action, the code and the
/// first FHIR element at fault (never a value), then answered; 503 if it cannot be logged.
async fn refused_consent(
    state: &AppState,
    caller: &crate::service::Caller<'_>,
    action: ConsentAction,
    e: ApiError,
) -> ApiError {
    let field = match &e {
        ApiError::BadRequest {
            details: Some(d), ..
        } => d
            .get("problems")
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .and_then(|p| p.get("field"))
            .or_else(|| d.get("field"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    match state
        .services
        .refused_consent_request(caller, action, e.code(), field.as_deref())
        .await
    {
        Ok(()) => e,
        Err(log) => log.into(),
    }
}

/// A FHIR Consent to record: mapped, `status` `active`, no revocation.
fn new_consent(body: Value) -> Result<crate::consent::directive::ConsentDirective, ApiError> {
    let parsed = fhirmap::consent::parse(body).map_err(invalid_resource)?;
    let mut problems = Problems::new();
    if parsed.status.as_deref() != Some("active") {
        problems.push(Problem::new(
            "Consent.status",
            if parsed.status.is_none() {
                "missing_element"
            } else {
                "unsupported_value"
            },
            "a consent is recorded with status `active` (drafts and proposals are kept in your \
             own system until signed)",
        ));
    }
    if parsed.revocation.is_some() {
        problems.push(Problem::new(
            "Consent.extension",
            "unsupported_element",
            "a new consent carries no revocation",
        ));
    }
    if !problems.is_empty() {
        return Err(invalid_resource(problems));
    }
    Ok(parsed.directive)
}

/// `POST /fhir/r4/Consent`.
#[instrument(skip_all)]
pub(super) async fn consent_create(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<FhirBody, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    let directive = match body.and_then(|b| new_consent(b.0)) {
        Ok(d) => d,
        Err(e) => return Err(refused_consent(&state, &caller, ConsentAction::Record, e).await),
    };
    let view = state
        .services
        .create_consent(&caller, directive)
        .await
        .map_err(consent_error)?;
    let policy = state.services.policy();
    let resource = fhirmap::consent::render(&view, &policy);
    let mut res = fhir_response(StatusCode::CREATED, &resource);
    if let Ok(v) = header::HeaderValue::from_str(&format!("{BASE}/Consent/{}", view.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET /fhir/r4/Consent/{id}`.
#[instrument(skip_all)]
pub(super) async fn consent_read(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .consent(&meta.caller(&who.0), &consent_id(&req))
        .await?;
    let policy = state.services.policy();
    Ok(fhir_response(
        StatusCode::OK,
        &fhirmap::consent::render(&view, &policy),
    ))
}

/// `GET /fhir/r4/Consent?patient:identifier=system|value`.
#[instrument(skip_all)]
pub(super) async fn consent_search(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut wanted = None;
    for (k, v) in query.iter() {
        match k.as_str() {
            "patient:identifier" if wanted.is_none() => wanted = Some(v.as_str()),
            "patient:identifier" => return Err(bad_search_param(k, "given more than once")),
            other => {
                return Err(bad_search_param(
                    other,
                    "not supported; search consents by `patient:identifier=system|value`",
                ));
            }
        }
    }
    let raw = wanted.ok_or_else(|| {
        bad_search_param(
            "patient:identifier",
            "required: `patient:identifier=<system>|<value>`",
        )
    })?;
    let (system, value) = raw
        .split_once('|')
        .ok_or_else(|| bad_search_param("patient:identifier", "give it as `<system>|<value>`"))?;
    let subject = system
        .strip_prefix(&codes::subject_system_prefix())
        .ok_or_else(|| {
            bad_search_param(
                "patient:identifier",
                format!(
                    "the system is a partner's identifier system `{}<system>`",
                    codes::subject_system_prefix()
                ),
            )
        })
        .and_then(|s| {
            SubjectIdentifier::new(s, value).map_err(|e| bad_search_param("patient:identifier", e))
        })?;
    let meta = RequestMeta::of(&req);
    let (_, consents) = state
        .services
        .subject_consents(&meta.caller(&who.0), &subject)
        .await?;
    let policy = state.services.policy();
    let base = base_url(&req);
    let entry: Vec<BundleEntry> = consents
        .iter()
        .map(|c| BundleEntry {
            full_url: Some(format!("{base}/Consent/{}", c.id)),
            resource: model::to_value(&fhirmap::consent::render(c, &policy)),
            search: Some(BundleSearch {
                mode: "match".into(),
            }),
        })
        .collect();
    let bundle = Bundle {
        resource_type: "Bundle".into(),
        id: Some(uuid::Uuid::new_v4().to_string()),
        meta: Some(Meta {
            security: vec![Coding::new(codes::CONFIDENTIALITY, "R", "restricted")],
            ..Meta::default()
        }),
        type_: "searchset".into(),
        timestamp: Some(
            state
                .services
                .now()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ),
        total: Some(entry.len() as u64),
        link: vec![BundleLink {
            relation: "self".into(),
            url: format!("{base}/Consent?patient:identifier={raw}"),
        }],
        entry,
    };
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// A FHIR Consent restated to revoke consent `id`: the directive as stated and the revocation.
fn revocation_of(
    id: &str,
    body: Value,
) -> Result<(crate::consent::directive::ConsentDirective, RevokeRequest), ApiError> {
    let parsed = fhirmap::consent::parse(body).map_err(invalid_resource)?;
    if parsed.id.as_deref() != Some(id) {
        return Err(invalid_resource(vec![Problem::new(
            "Consent.id",
            "invalid_reference",
            format!("the resource's `id` must be the id in the URL, `{id}`"),
        )]));
    }
    if !matches!(parsed.status.as_deref(), Some("rejected" | "inactive")) {
        return Err(ApiError::BadRequest {
            code: Code::ConsentNotEditable,
            message: "a recorded consent changes only by revocation: send it as recorded with \
                      `status` `rejected` (or `inactive`) and the revocation extension"
                .into(),
            details: Some(json!({ "field": "Consent.status" })),
        });
    }
    let revocation_field = |field: &str, what: &str| ApiError::BadRequest {
        code: Code::InvalidRevocation,
        message: format!(
            "`{field}`: {what}, in extension `{}`",
            codes::revocation_ext()
        ),
        details: Some(json!({ "field": "Consent.extension" })),
    };
    let stated = parsed.revocation.as_ref();
    let received_at = stated
        .and_then(|r| r.received_at)
        .ok_or_else(|| revocation_field("receivedAt", "give when the revocation was received"))?;
    let received_how = stated
        .and_then(|r| r.received_how)
        .ok_or_else(|| revocation_field("receivedHow", "give how it was received"))?;
    let request = RevokeRequest {
        received_at,
        received_how,
        note: stated.and_then(|r| r.note.clone()),
    };
    Ok((parsed.directive, request))
}

/// `PUT /fhir/r4/Consent/{id}`: revocation.
#[instrument(skip_all)]
pub(super) async fn consent_update(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<FhirBody, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let id = consent_id(&req);
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    let (directive, request) = match body.and_then(|b| revocation_of(&id, b.0)) {
        Ok(r) => r,
        Err(e) => return Err(refused_consent(&state, &caller, ConsentAction::Revoke, e).await),
    };
    let view = state
        .services
        .revoke_consent_as_recorded(&caller, &id, request, Some(&directive))
        .await
        .map_err(consent_error)?;
    let policy = state.services.policy();
    Ok(fhir_response(
        StatusCode::OK,
        &fhirmap::consent::render(&view, &policy),
    ))
}
