//! Per-request observability: a request id (the client's `x-request-id` if sane, else a new one,
//! echoed back), an access-log line (target `torchship::access`), and HTTP metrics labelled by route
//! template, never by raw path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

/// Unique per process and across restarts: a random prefix chosen at start and a counter.
fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    });
    format!(
        "{:08x}-{:x}",
        prefix >> 32,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn client_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_string())
}

/// The method as a metric label, from a fixed set: hyper accepts any token as a method, and a
/// label per token would let a client create series without bound.
pub fn method_label(m: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|k| *k == m)
        .map(|k| k.as_str())
        .unwrap_or("other")
}

pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(client_id)
        .unwrap_or_else(new_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let uri = request.uri().clone(); // shares its bytes: no copy per request
    let started = Instant::now();
    let mut response = next.run(request).await.into_response();
    let status = response.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    state.metrics().http(&route, method_label(&method), status);
    tracing::info!(
        target: "torchship::access",
        request_id = %id,
        method = %method,
        path = %uri.path(),
        status,
        latency_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_come_from_a_fixed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::GET), "GET");
        for token in ["FOO1", "get", "PROPFIND"] {
            assert_eq!(
                method_label(&Method::from_bytes(token.as_bytes()).unwrap()),
                "other"
            );
        }
    }

    #[test]
    fn ids_are_unique_and_client_ids_are_checked() {
        assert_ne!(new_request_id(), new_request_id());
        assert_eq!(
            client_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123".into())
        );
        assert_eq!(client_id(&HeaderValue::from_static("has space")), None);
        assert_eq!(
            client_id(&HeaderValue::from_str(&"x".repeat(200)).unwrap()),
            None
        );
    }
}
