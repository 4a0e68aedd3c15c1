//! The compliance console: static assets compiled into the binary, served at `/console/` on
//! the same mutual-TLS listener as the API (the officer's browser presents its agency's client
//! certificate, like every caller).
//!
//! Security role: the assets hold no data. Everything the console shows it reads through the
//! documented JSON API with the officer's token (held in the page's memory only), so the API's
//! authorization and its `log_read` entries apply to every read. Every asset is sent with a
//! strict `Content-Security-Policy` (scripts and styles from this origin only, no inline
//! script, no other host, no framing), `Referrer-Policy: no-referrer` and `Cache-Control`
//! that keeps the page from being stored. Only the fixed set of files below is served.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use crate::domain::Code;
use crate::error::ApiError;

/// The console's Content-Security-Policy: this origin only, no inline script or style, no
/// plug-ins, no framing, no form posts, no base-URI change.
pub(crate) const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One asset: name under `/console/`, content type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the console consists of (hand-written HTML, CSS and JavaScript modules; the
/// charts are SVG drawn by the page, so no third-party code is shipped).
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/console.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/api.js"),
    },
    Asset {
        name: "views.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/views.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/charts.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/dom.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../console/favicon.svg"),
    },
];

/// The names of the console's files (for tests and the API reference).
pub(super) fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// The JavaScript source of the console (for the test that its API calls are documented).
#[cfg(test)]
pub(super) fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
    ASSETS
        .iter()
        .filter(|a| a.name.ends_with(".js"))
        .filter_map(|a| std::str::from_utf8(a.body).ok().map(|s| (a.name, s)))
}

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/console", redirect)
        .get("/console/", index)
        .get("/console/{file}", file);
}

fn hardened(mut res: HttpResponse, cache: &'static str) -> HttpResponse {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    res
}

fn serve(name: &str) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS.iter().find(|a| a.name == name).ok_or_else(|| {
        ApiError::not_found(
            Code::RouteNotFound,
            format!(
                "the console has no file `{name}`; open `/console/` (files: {})",
                asset_names().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    // The page may be opened with a token in its fragment: keep it out of every cache.
    let cache = if asset.name == "index.html" {
        "no-store"
    } else {
        "no-cache"
    };
    Ok(hardened(
        HttpResponse::Ok()
            .content_type(asset.content_type)
            .body(asset.body),
        cache,
    ))
}

/// `GET /console`: to `/console/`, so the page's relative URLs resolve.
#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    operation_id = "console_redirect",
    summary = "Redirects to `/console/`",
    responses((status = 308, description = "`Location: /console/`")),
)]
pub(super) async fn redirect(_req: HttpRequest) -> HttpResponse {
    hardened(
        HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, "/console/"))
            .finish(),
        "no-store",
    )
}

/// `GET /console/`: the console's page.
#[utoipa::path(
    get,
    path = "/console/",
    tag = "console",
    operation_id = "console_page",
    summary = "The compliance console (HTML; needs a partner certificate, no token)",
    description = "The page reads the officer's token from the URL fragment (`#token=...`), \
        removes it from the address bar and keeps it in memory only; every read then goes \
        through the JSON API below.",
    responses((status = 200, description = "the page", body = String, content_type = "text/html")),
)]
pub(super) async fn index(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve("index.html")
}

/// `GET /console/{file}`: one of the console's files.
#[utoipa::path(
    get,
    path = "/console/{file}",
    tag = "console",
    operation_id = "console_file",
    summary = "One of the console's static files (scripts, styles, icon)",
    params(("file" = String, Path, description = "e.g. `app.js`, `console.css`")),
    responses(
        (status = 200, description = "the file", body = String),
        (status = 404, description = "`route_not_found`", body = crate::error::ErrorBody),
    ),
)]
pub(super) async fn file(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("file").unwrap_or_default().to_owned();
    serve(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_no_inline_script_and_nothing_from_another_host() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(page.contains("<script type=\"module\" src=\"app.js\"></script>"));
        for (i, _) in page.match_indices("<script") {
            let tag = &page[i..page[i..].find('>').unwrap() + i];
            assert!(tag.contains("src="), "inline script: {tag}");
        }
        assert!(!page.contains("style=\""), "inline style attribute");
        for asset in ASSETS {
            // The SVG namespace is a name, not a request.
            let text =
                String::from_utf8_lossy(asset.body).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://"),
                "{} names another host",
                asset.name
            );
            assert!(
                !text.contains("https://"),
                "{} names another host",
                asset.name
            );
            assert!(!text.contains("//cdn"), "{}", asset.name);
            assert!(!text.contains("localStorage"), "{}", asset.name);
            assert!(!text.contains("sessionStorage"), "{}", asset.name);
            assert!(!text.contains("document.cookie"), "{}", asset.name);
            assert!(!text.contains("eval("), "{}", asset.name);
            assert!(
                !text.contains("innerHTML"),
                "{}: build DOM nodes",
                asset.name
            );
        }
    }
}
