//! The route table: every route is registered through [`Routes`], which also records its
//! method and path, so the OpenAPI document can be checked against what the server actually
//! serves (a route missing from the document fails a test). Each path becomes one
//! `web::resource` with all its methods, so a method the path does not take is answered 405
//! with `Allow` rather than 404.

use actix_web::{FromRequest, Handler, Responder, web};

/// A registered route: method and path pattern, e.g. `("GET", "/v1/disclosures/{seq}")`.
pub type RouteInfo = (&'static str, &'static str);

/// Registers routes on an actix `ServiceConfig` and records each one.
pub struct Routes<'a> {
    cfg: &'a mut web::ServiceConfig,
    seen: Vec<RouteInfo>,
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
            resources: Vec::new(),
        }
    }

    /// The underlying configuration (for app data, not for routes).
    pub(super) fn config(&mut self) -> &mut web::ServiceConfig {
        self.cfg
    }

    /// Registers one resource per path and returns what was registered.
    pub(super) fn into_registered(self) -> Vec<RouteInfo> {
        for (_, resource) in self.resources {
            self.cfg.service(resource);
        }
        self.seen
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
