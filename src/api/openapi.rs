//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated from the
//! annotations next to each handler (`utoipa`): paths, parameters, the `Purpose-Of-Use` and
//! `Emergency-*` headers, bodies, answers and error codes. A test checks that every route
//! registered in [`super::configure`] is in it.
//!
//! Security role: none beyond honesty; the document holds no data and is served to any
//! partner certificate without a token (integrators' tools fetch it), with the same mutual TLS
//! as every route.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use crate::error::ErrorBody;
pub use crate::service::overview::Overview;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "coresponse-gateway",
        description = "Privacy-preserving data-sharing gateway between police departments and \
            mental-health agencies. Every call needs the partner's client certificate (mutual \
            TLS); every route but `/healthz`, `/openapi.json` and the console's static files \
            also needs `Authorization: Bearer <JWT>` from the partner's identity provider, bound \
            to that certificate. Errors are `{\"code\", \"message\", \"details\"?}` with a \
            stable `code`; every response carries `Request-Id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::health::healthz,
        super::whoami::whoami,
        super::audit::list,
        super::audit::one,
        super::audit::accounting,
        super::audit::suspend,
        super::audit::suspensions,
        super::audit::verify,
        super::audit::checkpoints,
        super::transparency::checkpoint,
        super::transparency::inclusion,
        super::transparency::consistency,
        super::transparency::cosign,
        super::directives::create_restriction,
        super::directives::restriction,
        super::directives::terminate_restriction,
        super::directives::subject_restrictions,
        super::directives::create_court_order,
        super::directives::court_orders,
        super::directives::court_order,
        super::directives::end_court_order,
        super::policy::list,
        super::policy::one,
        super::part2::list,
        super::overview::overview,
        super::consents::create,
        super::consents::one,
        super::consents::revoke,
        super::consents::list,
        super::consents::coverage,
        super::records::put,
        super::records::get,
        super::records::versions,
        super::records::by_subject,
        super::referrals::create,
        super::referrals::read,
        super::referrals::move_to,
        super::reports::list,
        super::reports::run,
        super::reviews::list,
        super::reviews::one,
        super::reviews::close,
        openapi_json,
        super::console::redirect,
        super::console::index,
        super::console::file,
    ),
    components(schemas(ErrorBody, Overview)),
    modifiers(&Security),
    tags(
        (name = "health", description = "liveness and identity"),
        (name = "records", description = "reading and writing shared records (the disclosure path)"),
        (name = "referrals", description = "the referral life cycle"),
        (name = "consents", description = "consent directives and coverage"),
        (name = "reports", description = "program outcome reports: aggregates released only after disclosure control"),
        (name = "compliance", description = "the disclosure log, accounting, verification, reviews"),
        (name = "transparency", description = "the log's Merkle tree: signed tree heads (C2SP checkpoints), inclusion and consistency proofs, witness cosignatures; hashes only, for any partner certificate"),
        (name = "console", description = "the compliance console's static files"),
    ),
)]
pub struct ApiDoc;

/// The security schemes: mutual TLS for every call, a bearer JWT for most.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "a JWT from the partner's identity provider, bound to the client \
                         certificate (`cnf.x5t#S256`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "mutual_tls",
            SecurityScheme::MutualTls {
                description: Some(
                    "the partner's client certificate, naming it in a URI SAN \
                     `spiffe://<trust domain>/partner/<id>`; required on every connection"
                        .into(),
                ),
                extensions: None,
            },
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

/// Registers the route.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/openapi.json", openapi_json);
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    operation_id = "openapi",
    summary = "This document (OpenAPI 3.1); a partner certificate, no token",
    responses((status = 200, description = "the document", body = Object, content_type = "application/json")),
)]
pub(super) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(super::NO_STORE)
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(document()).unwrap()
    }

    #[test]
    fn every_registered_route_is_documented() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let registered = super::super::registered_routes();
        let routes = registered.routes;
        assert!(routes.len() >= 44, "{routes:?}");
        // Routes left out deliberately: only the FHIR API, which its CapabilityStatement
        // describes (a test in tests/api/fhir.rs compares that with the FHIR routes).
        for ((method, path), by) in &registered.described_elsewhere {
            assert!(
                path.starts_with("/fhir/r4/") && *by == super::super::fhir::DESCRIBED_BY,
                "{method} {path} is left out of the OpenAPI document without a reason: {by}"
            );
            assert!(
                !doc["paths"][*path].is_object(),
                "{method} {path} is both in the OpenAPI document and described elsewhere"
            );
        }
        assert!(
            registered
                .described_elsewhere
                .iter()
                .any(|((m, p), _)| *m == "GET" && *p == "/fhir/r4/metadata"),
            "the FHIR routes are registered"
        );
        let mut missing = Vec::new();
        for (method, path) in &routes {
            let op = &doc["paths"][*path][method.to_lowercase()];
            if !op.is_object() {
                missing.push(format!("{method} {path}"));
            }
        }
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
        // And nothing documented that is not served.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                assert!(
                    routes
                        .iter()
                        .any(|(m, p)| p == path && m.eq_ignore_ascii_case(method)),
                    "documented but not served: {method} {path}"
                );
            }
        }
    }

    #[test]
    fn every_operation_names_its_answers_and_the_headers_are_documented() {
        let doc = doc();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
            }
        }
        let read = &doc["paths"]["/v1/records/{kind}/{id}"]["get"];
        let headers: Vec<&str> = read["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for h in [
            "Purpose-Of-Use",
            "Emergency-Basis",
            "Emergency-Source",
            "Emergency-Description",
        ] {
            assert!(headers.contains(&h), "{h} missing: {headers:?}");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["securitySchemes"]["mutual_tls"].is_object());
        // The transparency routes take a partner certificate and no token.
        for (path, method) in [
            ("/v1/audit/checkpoint", "get"),
            ("/v1/audit/proof/inclusion", "get"),
            ("/v1/audit/proof/consistency", "get"),
            ("/v1/audit/cosignatures", "post"),
        ] {
            let op = &doc["paths"][path][method];
            assert_eq!(op["tags"][0], "transparency", "{method} {path}");
            assert_eq!(
                op["security"],
                serde_json::json!([{ "mutual_tls": [] }]),
                "{method} {path}"
            );
        }
        let inclusion = &doc["paths"]["/v1/audit/proof/inclusion"]["get"]["parameters"];
        let names: Vec<&str> = inclusion
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["index", "size"]);
    }

    #[test]
    fn the_console_calls_only_documented_routes() {
        let doc = doc();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        let matches = |called: &str| {
            paths.iter().any(|p| {
                let (a, b): (Vec<&str>, Vec<&str>) =
                    (p.split('/').collect(), called.split('/').collect());
                a.len() == b.len()
                    && a.iter().zip(&b).all(|(x, y)| {
                        x == y
                            || (x.starts_with('{') && (y.starts_with('{') || y.starts_with("${")))
                    })
            })
        };
        let mut calls = 0;
        for (name, source) in super::super::console::scripts() {
            // API paths appear in the scripts only as template or string literals starting
            // with `/v1/` (see console/api.js).
            for (i, _) in source
                .match_indices("'/v1/")
                .chain(source.match_indices("`/v1/"))
            {
                let rest = &source[i + 1..];
                let end = rest.find(['\'', '`', '?']).unwrap();
                let called = &rest[..end];
                calls += 1;
                assert!(
                    matches(called),
                    "{name} calls `{called}`, which is not documented"
                );
            }
        }
        assert!(calls >= 10, "only {calls} API calls found in the console");
    }
}
