//! What the HTTP edge counts for the metrics endpoint: requests by route pattern, method and
//! status, and open connections.
//!
//! Security role: a request is counted under its route *pattern*, never its path, so no
//! identifier reaches a label; requests that match no route are counted as `unmatched`. The
//! table is bounded. Patterns are written with `:name` for each parameter
//! (`/v1/disclosures/:seq`), which every text-format parser reads unambiguously.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Most distinct (route, method, status) rows kept; later ones are counted as `other`.
const MAX_ROWS: usize = 2048;

/// Request and connection counts.
#[derive(Debug, Default)]
pub struct HttpStats {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    open_connections: AtomicI64,
}

impl HttpStats {
    /// Counts one answered request.
    pub fn request(&self, route: Option<&str>, method: &str, status: u16) {
        let Ok(mut map) = self.requests.lock() else {
            return;
        };
        let method = match method {
            "GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH" => method,
            _ => "other",
        };
        let mut key = (
            route.map_or_else(|| "unmatched".to_owned(), route_label),
            method.to_owned(),
            status,
        );
        if !map.contains_key(&key) && map.len() >= MAX_ROWS {
            key = ("other".to_owned(), "other".to_owned(), status);
        }
        *map.entry(key).or_insert(0) += 1;
    }

    /// Every (route, method, status) row and its count.
    pub fn requests(&self) -> Vec<((String, String, u16), u64)> {
        self.requests
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// A guard that counts one open connection until dropped (kept in the connection's data).
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }
}

/// `/v1/records/{kind}/{id}` as `/v1/records/:kind/:id` (a `{name:regex}` parameter too).
pub fn route_label(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut depth = 0_u32;
    let mut named = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push(':');
                    named = true;
                }
                depth += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            ':' if depth > 0 => named = false,
            _ if depth > 0 => {
                if named {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Counts an open connection while it lives.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<HttpStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_become_labels_without_braces() {
        assert_eq!(
            route_label("/v1/records/{kind}/{id}"),
            "/v1/records/:kind/:id"
        );
        assert_eq!(route_label("/console/{file:.*}"), "/console/:file");
        assert_eq!(route_label("/healthz"), "/healthz");
    }
}
