//! `ServiceRequest` and `Task` under `/fhir/r4`: a police referral made through the referral
//! service, and read back as a Task through the disclosure path.

use super::*;

/// Moves the referral fields a referral-service refusal names to their FHIR paths.
fn referral_error(e: crate::service::Error) -> ApiError {
    use crate::service::Error as E;
    let path = |f: &str| match f {
        "incident_id" => "ServiceRequest.supportingInfo",
        "receiving_agency" => "ServiceRequest.performer",
        "reason" => "ServiceRequest.reasonCode",
        "urgency" => "ServiceRequest.priority",
        "subject_name" | "subject_phone" | "subjects" => "ServiceRequest.subject",
        "consent_reference" => "ServiceRequest.supportingInfo",
        _ => "ServiceRequest",
    };
    match e {
        E::Invalid {
            code,
            message,
            details: Some(mut details),
        } => {
            if let Some(f) = details.get("field").and_then(Value::as_str) {
                let to = path(f);
                set(&mut details, "field", json!(to));
            }
            if let Some(fields) = details.get_mut("fields").and_then(Value::as_array_mut) {
                for f in fields {
                    if let Some(name) = f.get("field").and_then(Value::as_str) {
                        let to = path(name);
                        set(f, "field", json!(to));
                    }
                }
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

/// `POST /fhir/r4/ServiceRequest`: creates a referral; answers with its Task.
#[instrument(skip_all)]
pub(super) async fn service_request_create(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let referral = fhirmap::referral::parse(body.0).map_err(invalid_resource)?;
    let meta = RequestMeta::of(&req);
    let created = state
        .services
        .create_referral(&meta.caller(&who.0), referral)
        .await
        .map_err(referral_error)?;
    let policy = state.services.policy();
    let id = created.id.to_string();
    let partner = |p: &crate::domain::PartnerId| {
        fhirmap::partner_ref(
            p.as_str(),
            policy.partners.get(p).map(|x| x.display_name.as_str()),
        )
    };
    let system = codes::record_system(crate::service::read::REFERRAL_KIND);
    let task = Task {
        resource_type: "Task".into(),
        id: model::is_fhir_id(&id).then(|| id.clone()),
        meta: Some(Meta {
            version_id: Some(created.version.to_string()),
            security: vec![Coding::new(codes::CONFIDENTIALITY, "R", "restricted")],
            ..Meta::default()
        }),
        identifier: vec![Identifier::new(&system, &id)],
        based_on: vec![Reference {
            type_: Some("ServiceRequest".into()),
            identifier: Some(Identifier::new(&system, &id)),
            ..Reference::default()
        }],
        status: Some("requested".into()),
        business_status: Some(CodeableConcept::of(Coding::new(
            &codes::referral_status_system(),
            "SUBMITTED",
            "",
        ))),
        intent: "order".into(),
        requester: Some(partner(&who.0.partner)),
        owner: Some(partner(&created.receiving_agency)),
        input: vec![TaskInput {
            type_: CodeableConcept::of(Coding::new(
                &codes::field_system(),
                "referral.incident_id",
                "",
            )),
            value_string: Some(created.incident_id.to_string()),
            ..TaskInput::default()
        }],
        ..Task::default()
    };
    let mut res = fhir_response(StatusCode::CREATED, &task);
    if let Ok(v) = header::HeaderValue::from_str(&format!("{BASE}/Task/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

fn referral_id(raw: &str, name: &str) -> Result<RecordId, ApiError> {
    raw.parse()
        .map_err(|e: crate::domain::InvalidInput| ApiError::BadRequest {
            code: Code::InvalidPath,
            message: format!("`{name}`: {e}"),
            details: Some(json!({ "parameter": name })),
        })
}

async fn read_referral(
    state: &AppState,
    req: &HttpRequest,
    who: &crate::domain::Principal,
    purpose: &PurposeOfUse,
    id: &RecordId,
) -> Result<DisclosedRecord, ApiError> {
    let meta = RequestMeta::of(req);
    let asker = purpose.asker(meta.caller(who));
    match state
        .services
        .read_record(&asker, &referral_kind()?, id)
        .await?
    {
        RecordAnswer::Disclosed(d) => Ok(d),
        RecordAnswer::Denied(d) => Err(d.into_error().into()),
    }
}

/// `GET /fhir/r4/Task/{id}`: the referral as a Task, through the disclosure path.
#[instrument(skip_all)]
pub(super) async fn task_read(
    Authenticated(who): Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    purpose: PurposeOfUse,
) -> Result<HttpResponse, ApiError> {
    let id = referral_id(req.match_info().get("id").unwrap_or_default(), "id")?;
    let d = read_referral(&state, &req, &who, &purpose, &id).await?;
    let policy = state.services.policy();
    let rendered = fhirmap::disclosure::render(&d, &policy, &who.partner);
    let mut res = fhir_response(StatusCode::OK, &rendered.resource);
    receipt_headers(&mut res, std::slice::from_ref(&d.disclosure_id));
    Ok(res)
}

/// `GET /fhir/r4/Task?_id=<id>[&_revinclude=Provenance:target]`.
#[instrument(skip_all)]
pub(super) async fn task_search(
    Authenticated(who): Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    purpose: PurposeOfUse,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (mut id, mut provenance) = (None, false);
    for (k, v) in query.iter() {
        match k.as_str() {
            "_id" if id.is_none() => id = Some(referral_id(v, "_id")?),
            "_revinclude" if v == "Provenance:target" => provenance = true,
            "_revinclude" => {
                return Err(bad_search_param(k, "only `Provenance:target` is supported"));
            }
            other => {
                return Err(bad_search_param(
                    other,
                    "not supported; search tasks by `_id` (and `_revinclude=Provenance:target`)",
                ));
            }
        }
    }
    let id = id.ok_or_else(|| bad_search_param("_id", "required: the referral id"))?;
    let d = read_referral(&state, &req, &who, &purpose, &id).await?;
    let policy = state.services.policy();
    let base = base_url(&req);
    let self_url = format!("{base}/Task?{}", req.query_string());
    let bundle = fhirmap::disclosure::task_search(
        &d,
        &policy,
        &who.partner,
        &base,
        &self_url,
        provenance,
        state.services.now(),
    );
    let mut res = fhir_response(StatusCode::OK, &bundle);
    receipt_headers(&mut res, std::slice::from_ref(&d.disclosure_id));
    Ok(res)
}
