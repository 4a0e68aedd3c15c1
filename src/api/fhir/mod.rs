//! The FHIR R4 routes under `/fhir/r4`: thin handlers that parse FHIR into the same inputs as
//! `/v1` ([`crate::fhir`]), call the same service function, and answer FHIR.
//!
//! - `GET /fhir/r4/metadata`: the CapabilityStatement, built from [`ROUTES`], the table the
//!   routes are registered from (a client certificate is enough, as for `/healthz`);
//! - `POST /fhir/r4/Consent`, `GET /fhir/r4/Consent/{id}`,
//!   `GET /fhir/r4/Consent?patient:identifier=system|value`, `PUT /fhir/r4/Consent/{id}`
//!   (revocation): the consent services;
//! - `POST /fhir/r4/ServiceRequest`: the referral service;
//! - `GET /fhir/r4/Task/{id}` and `GET /fhir/r4/Task?_id=` (with `Purpose-Of-Use`): the read
//!   service, the referral as a Task with security labels.
//!
//! Every error under `/fhir/r4`, from any extractor or handler, leaves as an
//! `OperationOutcome` (`application/fhir+json`) with the JSON API's code and one issue per
//! problem (the `outcomes` middleware). The `/v1` reads answer a FHIR `Bundle` when asked with
//! `Accept: application/fhir+json` ([`wants_fhir`], [`disclosure_bundle`]).
//!
//! The handlers are in `consent` (Consent) and `task` (ServiceRequest, Task); this module holds
//! the route table, the CapabilityStatement, the `OperationOutcome` mapping and the `Bundle`
//! answers of `/v1` reads.
//!
//! Security role: no rule of its own. Every FHIR request is authenticated, decided, logged and
//! answered by the `/v1` service functions; a resource that does not map is refused (a refused
//! consent logged as on `/v1`), and a FHIR read carries the same receipt headers as the JSON one.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use chrono::SecondsFormat;
use serde_json::{Value, json};
use tracing::instrument;

use super::purpose::PurposeOfUse;
use super::query::bad_search_param;
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::domain::Code;
use crate::domain::{RecordId, SubjectIdentifier};
use crate::error::{ApiError, DISCLOSURE_ID, ErrorBody, LOG_LEAF_HASH, LOG_LEAF_INDEX};
use crate::fhir::codes::{self, FHIR_JSON};
use crate::fhir::model::{
    self, Bundle, BundleEntry, BundleLink, BundleSearch, CodeableConcept, Coding, Identifier,
    Issue, Meta, OperationOutcome, Reference, Task, TaskInput,
};
use crate::fhir::{self as fhirmap, Problem, Problems};
use crate::service::consents::{ConsentAction, RevokeRequest};
use crate::service::referrals::referral_kind;
use crate::service::{DisclosedRecord, RecordAnswer};

mod consent;
mod task;

use consent::{consent_create, consent_read, consent_search, consent_update};
use task::{service_request_create, task_read, task_search};

/// The base path of the FHIR API.
pub const BASE: &str = "/fhir/r4";

/// One FHIR interaction the gateway supports.
#[derive(Debug, Clone, Copy)]
pub struct FhirRoute {
    /// The resource type.
    pub resource: &'static str,
    /// The FHIR interaction (`read`, `create`, `update`, `search-type`).
    pub interaction: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// The full path (under [`BASE`]).
    pub path: &'static str,
    /// What it does, for the CapabilityStatement.
    pub documentation: &'static str,
}

/// Every FHIR interaction served: the routes are registered from this table and the
/// CapabilityStatement lists exactly it.
pub const ROUTES: [FhirRoute; 7] = [
    FhirRoute {
        resource: "Consent",
        interaction: "create",
        method: "POST",
        path: "/fhir/r4/Consent",
        documentation: "Records a consent directive (validated as POST /v1/consents, with the \
                        42 CFR 2.31 elements); by a partner among its disclosers.",
    },
    FhirRoute {
        resource: "Consent",
        interaction: "read",
        method: "GET",
        path: "/fhir/r4/Consent/{id}",
        documentation: "A consent with its status; to its disclosers and compliance officers.",
    },
    FhirRoute {
        resource: "Consent",
        interaction: "update",
        method: "PUT",
        path: "/fhir/r4/Consent/{id}",
        documentation: "Revocation only: the consent as recorded with status `rejected` (or \
                        `inactive`) and the revocation extension.",
    },
    FhirRoute {
        resource: "Consent",
        interaction: "search-type",
        method: "GET",
        path: "/fhir/r4/Consent",
        documentation: "A person's consents: `patient:identifier=system|value` only.",
    },
    FhirRoute {
        resource: "ServiceRequest",
        interaction: "create",
        method: "POST",
        path: "/fhir/r4/ServiceRequest",
        documentation: "A police referral (POST /v1/referrals); answered with its Task.",
    },
    FhirRoute {
        resource: "Task",
        interaction: "read",
        method: "GET",
        path: "/fhir/r4/Task/{id}",
        documentation: "A referral as a Task, through the disclosure path (Purpose-Of-Use \
                        header required; the police status view applies).",
    },
    FhirRoute {
        resource: "Task",
        interaction: "search-type",
        method: "GET",
        path: "/fhir/r4/Task",
        documentation: "`_id=<referral id>` (required) and `_revinclude=Provenance:target`: the \
                        Task and the Provenance naming its disclosure-log entry.",
    },
];

/// Why the OpenAPI document leaves the FHIR routes out: they are a FHIR API, described the
/// FHIR way.
pub const DESCRIBED_BY: &str = "the FHIR CapabilityStatement at GET /fhir/r4/metadata";

/// Registers the FHIR routes: one scope under [`BASE`] whose errors all leave as
/// `OperationOutcome`s, recorded in the route table as described by the CapabilityStatement.
/// Each path is one resource with all its methods, so a method the path does not take is
/// answered 405 `method_not_allowed` with `Allow` (an unknown path: 404 `route_not_found`).
pub(super) fn routes(r: &mut super::Routes<'_>) {
    let mut paths: Vec<(&'static str, Vec<actix_web::Route>)> =
        vec![("/metadata", vec![web::get().to(metadata)])];
    let mut served: Vec<super::RouteInfo> = vec![("GET", METADATA)];
    for f in ROUTES {
        let route = match (f.resource, f.interaction) {
            ("Consent", "create") => web::post().to(consent_create),
            ("Consent", "read") => web::get().to(consent_read),
            ("Consent", "update") => web::put().to(consent_update),
            ("Consent", "search-type") => web::get().to(consent_search),
            ("ServiceRequest", "create") => web::post().to(service_request_create),
            ("Task", "read") => web::get().to(task_read),
            ("Task", "search-type") => web::get().to(task_search),
            _ => continue,
        };
        let path = f.path.strip_prefix(BASE).unwrap_or(f.path);
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push(route),
            None => paths.push((path, vec![route])),
        }
        served.push((f.method, f.path));
    }
    let mut scope = web::scope(BASE).wrap(from_fn(outcomes));
    for (path, routes) in paths {
        scope = scope.service(
            routes
                .into_iter()
                .fold(web::resource(path), actix_web::Resource::route),
        );
    }
    r.scope_described_elsewhere(
        scope.default_service(web::to(super::not_found)),
        served,
        DESCRIBED_BY,
    );
}

/// The CapabilityStatement's path.
pub const METADATA: &str = "/fhir/r4/metadata";

/// Sets `key` of a JSON object (nothing if `v` is not an object).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

/// A FHIR JSON answer.
fn fhir_response(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .insert_header(NO_STORE)
        .body(serde_json::to_vec(body).unwrap_or_default())
}

/// The FHIR issue type for an error.
fn issue_type(status: StatusCode, code: &str, problem: Option<&str>) -> &'static str {
    match problem {
        Some("unsupported_element") => return "not-supported",
        Some("unknown_code_system" | "unknown_code" | "unknown_purpose") => return "code-invalid",
        Some("invalid_structure" | "wrong_resource_type") => return "structure",
        Some("missing_element") => return "required",
        Some(_) if code == Code::ConsentIncomplete.as_str() => return "required",
        _ => {}
    }
    match status.as_u16() {
        400 => "invalid",
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 | 415 => "not-supported",
        409 => "conflict",
        413 => "too-long",
        503 => "transient",
        _ => "exception",
    }
}

fn issue(
    status: StatusCode,
    code: &str,
    problem: Option<&str>,
    message: &str,
    expression: Option<&str>,
) -> Issue {
    let mut coding = vec![Coding::new(&codes::error_system(), code, "")];
    if let Some(p) = problem {
        coding.push(Coding::new(&codes::problem_system(), p, ""));
    }
    Issue {
        severity: if status.is_server_error() {
            "fatal".into()
        } else {
            "error".into()
        },
        code: issue_type(status, code, problem).into(),
        details: Some(CodeableConcept {
            coding,
            text: Some(message.to_owned()),
        }),
        diagnostics: None,
        expression: expression.map(str::to_owned).into_iter().collect(),
    }
}

/// One issue per problem of an error body.
pub fn operation_outcome(status: StatusCode, body: &ErrorBody) -> OperationOutcome {
    let code = body.code.as_str();
    let details = body.details.as_ref();
    let list = |key: &str| details.and_then(|d| d.get(key)).and_then(Value::as_array);
    let mut issues = Vec::new();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    // `details.problems` (each with its `code`), else `details.fields` given as objects (each
    // with its `problem`): one issue each.
    let per_item = list("problems").map(|p| (p, "code")).or_else(|| {
        list("fields")
            .filter(|f| f.iter().all(Value::is_object))
            .map(|f| (f, "problem"))
    });
    if let Some((items, problem)) = per_item {
        for p in items {
            let message = text(p, "message").unwrap_or_else(|| body.message.clone());
            issues.push(issue(
                status,
                code,
                p.get(problem).and_then(Value::as_str),
                &message,
                p.get("field").and_then(Value::as_str),
            ));
        }
    }
    if issues.is_empty() {
        let at = details
            .and_then(|d| d.get("field").or_else(|| d.get("parameter")))
            .and_then(Value::as_str);
        issues.push(issue(status, code, None, &body.message, at));
    }
    OperationOutcome {
        resource_type: "OperationOutcome".into(),
        issue: issues,
    }
}

/// Renders every error under `/fhir/r4` as an `OperationOutcome`, keeping the status and the
/// headers the JSON error would carry (`WWW-Authenticate`, `Disclosure-Id`, `Cache-Control`,
/// `Allow`). actix's own empty 405 becomes `method_not_allowed`, as on `/v1`.
async fn outcomes(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let not_allowed = super::middleware::method_not_allowed(&res);
    let Some(api) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .or(not_allowed.as_ref())
    else {
        return Ok(res.map_into_boxed_body());
    };
    let (head, body) = api.error_response().into_parts();
    let status = head.status();
    let parsed: ErrorBody = body
        .try_into_bytes()
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| ErrorBody {
            code: api.code().as_str().to_owned(),
            message: "the gateway failed to process the request".into(),
            details: None,
        });
    let outcome = operation_outcome(status, &parsed);
    let mut new = head.set_body(BoxBody::new(
        serde_json::to_vec(&outcome).unwrap_or_default(),
    ));
    new.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(FHIR_JSON),
    );
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, new))
}

/// A FHIR resource in a request body: `application/fhir+json` (or `application/json`),
/// bounded in size and depth like every JSON body.
#[derive(Debug)]
pub struct FhirBody(pub Value);

impl FromRequest for FhirBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read =
            super::json::read_bounded(req, payload, &["application/fhir+json", "application/json"]);
        Box::pin(async move {
            let body = read.await?;
            serde_json::from_slice(&body).map(FhirBody).map_err(|e| {
                ApiError::bad_request(Code::InvalidJson, format!("invalid JSON body: {e}"))
            })
        })
    }
}

/// The answer to a FHIR resource that does not map: 400 `invalid_resource`, one issue per
/// problem.
fn invalid_resource(problems: Problems) -> ApiError {
    let message = problems
        .iter()
        .map(|p| format!("`{}`: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::BadRequest {
        code: Code::InvalidResource,
        message: format!("the FHIR resource cannot be used: {message}"),
        details: Some(json!({ "problems": problems })),
    }
}

/// The FHIR base URL of this request, e.g. `https://gw.example:8443/fhir/r4`.
fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{BASE}", info.scheme(), info.host())
}

/// `GET /fhir/r4/metadata`.
#[instrument(skip_all)]
async fn metadata(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    fhir_response(
        StatusCode::OK,
        &capability_statement(&state, &base_url(&req)),
    )
}

/// The CapabilityStatement: exactly [`ROUTES`].
pub fn capability_statement(state: &AppState, base: &str) -> Value {
    let mut by_type: Vec<(&str, Vec<&FhirRoute>)> = Vec::new();
    for r in &ROUTES {
        match by_type.iter_mut().find(|(t, _)| *t == r.resource) {
            Some((_, list)) => list.push(r),
            None => by_type.push((r.resource, vec![r])),
        }
    }
    let resources: Vec<Value> = by_type
        .iter()
        .map(|(t, list)| {
            let mut res = json!({
                "type": t,
                "interaction": list.iter().map(|r| json!({
                    "code": r.interaction, "documentation": r.documentation,
                })).collect::<Vec<_>>(),
            });
            let params: Vec<Value> = match *t {
                "Consent" => vec![json!({
                    "name": "patient", "type": "reference",
                    "documentation": "with the `:identifier` modifier only: \
                                      `patient:identifier=<system>|<value>`",
                })],
                "Task" => vec![json!({
                    "name": "_id", "type": "token",
                    "documentation": "the referral id (required)",
                })],
                _ => Vec::new(),
            };
            if !params.is_empty() {
                set(&mut res, "searchParam", json!(params));
            }
            if *t == "Task" {
                set(&mut res, "searchRevInclude", json!(["Provenance:target"]));
            }
            if list.iter().any(|r| r.interaction == "update") {
                set(&mut res, "updateCreate", json!(false));
            }
            res
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": state.services.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "publisher": "coresponse-gateway",
        "kind": "instance",
        "software": {"name": "coresponse-gateway", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "coresponse-gateway FHIR R4 API", "url": base},
        "fhirVersion": codes::FHIR_VERSION,
        "format": [FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "Every request presents a partner client certificate (mutual TLS) \
                              and, except for metadata, a bearer token from the partner's \
                              identity provider bound to it; reads state Purpose-Of-Use. \
                              Every error is an OperationOutcome.",
            "security": {
                "cors": false,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "Certificates", "display": "Certificates",
                }]}],
                "description": "Mutual TLS with partner certificates; bearer tokens bound to \
                                the certificate (RFC 8705).",
            },
            "resource": resources,
        }],
    })
}

/// Whether a `/v1` read asks for FHIR: `Accept` prefers `application/fhir+json` to
/// `application/json` (plain JSON stays the default, also on a tie).
pub fn wants_fhir(req: &HttpRequest) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (mut fhir, mut json_q, mut wildcard) = (None::<f32>, None::<f32>, None::<f32>);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            "application/fhir+json" => &mut fhir,
            "application/json" => &mut json_q,
            "*/*" | "application/*" => &mut wildcard,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    let fhir = fhir.unwrap_or(0.0);
    let json_q = json_q.or(wildcard).unwrap_or(0.0);
    fhir > 0.0 && fhir > json_q
}

/// The FHIR answer to a `/v1` read: a `collection` Bundle of the disclosed resources, each
/// with its Provenance, with the receipt headers of the JSON answer.
pub fn disclosure_bundle(
    state: &AppState,
    who: &crate::domain::Principal,
    records: &[DisclosedRecord],
) -> HttpResponse {
    let policy = state.services.policy();
    let bundle =
        fhirmap::disclosure::collection(records, &policy, &who.partner, state.services.now());
    let mut res = fhir_response(StatusCode::OK, &bundle);
    let refs: Vec<crate::audit::LogRef> = records.iter().map(|r| r.disclosure_id).collect();
    receipt_headers(&mut res, &refs);
    res
}

/// The headers that name the disclosure-log entries of a disclosure, as on `/v1`:
/// `Disclosure-Id`, `Log-Leaf-Index` and `Log-Leaf-Hash` (comma-separated, one per entry).
fn receipt_headers(res: &mut HttpResponse, refs: &[crate::audit::LogRef]) {
    let join = |f: &dyn Fn(&crate::audit::LogRef) -> String| {
        refs.iter().map(f).collect::<Vec<_>>().join(",")
    };
    for (name, value) in [
        (DISCLOSURE_ID, join(&|r| r.seq.to_string())),
        (LOG_LEAF_INDEX, join(&|r| r.leaf_index.to_string())),
        (LOG_LEAF_HASH, join(&|r| r.leaf_hash_b64())),
    ] {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::try_from(name),
            header::HeaderValue::from_str(&value),
        ) {
            res.headers_mut().insert(n, v);
        }
    }
}
