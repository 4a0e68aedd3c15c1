//! The route table: every route is registered through [`Routes`], which also records its
//! method and path, so the OpenAPI document can be checked against what the server actually
//! serves (a route missing from the document fails a test). Each path becomes one
//! `web::resource` with all its methods, so a method the path does not take is answered 405
//! with `Allow` rather than 404. A scope another document describes (the FHIR API, described by
//! its CapabilityStatement) is registered whole and recorded with what describes it.

use actix_web::{FromRequest, Handler, Responder, web};

/// A registered route: method and path pattern, e.g. `("GET", "/v1/disclosures/{seq}")`.
pub type RouteInfo = (&'static str, &'static str);

/// What a configuration registered.
#[derive(Debug, Clone, Default)]
pub struct Registered {
    /// Routes the OpenAPI document describes.
    pub routes: Vec<RouteInfo>,
    /// Routes another document describes, with what describes them (e.g. the FHIR routes,
    /// described by their CapabilityStatement).
    pub described_elsewhere: Vec<(RouteInfo, &'static str)>,
}

/// Registers routes on an actix `ServiceConfig` and records each one.
pub struct Routes<'a> {
    cfg: &'a mut web::ServiceConfig,
    seen: Vec<RouteInfo>,
    /// Routes another document describes, with what describes them.
    elsewhere: Vec<(RouteInfo, &'static str)>,
    /// One resource per path, in the order the paths were first named.
    resources: Vec<(&'static str, actix_web::Resource)>,
}

impl std::fmt::Debug for Routes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").field("seen", &self.seen).finish()
    }
}

impl<'a> Routes<'a> {
    /// Routes registered on `cfg`.
    pub(super) fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self {
            cfg,
            seen: Vec::new(),
            elsewhere: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// The underlying configuration (for app data, not for routes).
    pub(super) fn config(&mut self) -> &mut web::ServiceConfig {
        self.cfg
    }

    /// Registers one resource per path and returns what was registered.
    pub(super) fn into_registered(self) -> Registered {
        for (_, resource) in self.resources {
            self.cfg.service(resource);
        }
        Registered {
            routes: self.seen,
            described_elsewhere: self.elsewhere,
        }
    }

    /// Registers a scope whose routes (`served`) the OpenAPI document leaves to another
    /// description, named by `described_by` (the FHIR API: its CapabilityStatement).
    pub(super) fn scope_described_elsewhere(
        &mut self,
        scope: impl actix_web::dev::HttpServiceFactory + 'static,
        served: Vec<RouteInfo>,
        described_by: &'static str,
    ) {
        // Its own prefix: no path of the resources registered later falls under it.
        self.cfg.service(scope);
        self.elsewhere
            .extend(served.into_iter().map(|r| (r, described_by)));
    }

    fn add<F, Args>(
        &mut self,
        method: &'static str,
        path: &'static str,
        route: actix_web::Route,
        h: F,
    ) where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = route.to(h);
        match self.resources.iter_mut().find(|(p, _)| *p == path) {
            Some((_, resource)) => {
                let r = std::mem::replace(resource, web::resource(path));
                *resource = r.route(route);
            }
            None => self
                .resources
                .push((path, web::resource(path).route(route))),
        }
        self.seen.push((method, path));
    }

    /// `GET path`.
    pub(super) fn get<F, Args>(&mut self, path: &'static str, h: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("GET", path, web::get(), h);
        self
    }

    /// `POST path`.
    pub(super) fn post<F, Args>(&mut self, path: &'static str, h: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("POST", path, web::post(), h);
        self
    }

    /// `PUT path`.
    pub(super) fn put<F, Args>(&mut self, path: &'static str, h: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add("PUT", path, web::put(), h);
        self
    }
}
