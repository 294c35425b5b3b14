//! The HTTP side: a loopback listener, a kubeconfig pointing at it, and one handler that reads each
//! request, asks the script which expectation answers it, and answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

use crate::expect::{Expect, Incoming, Reply};
use crate::script::Script;
use crate::{status, TOKEN};

/// The running stand-in.
pub struct StandIn {
    pub url: String,
    pub kubeconfig: PathBuf,
    script: Arc<Mutex<Script>>,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl StandIn {
    /// Starts serving `expected`, in order.
    pub async fn start(expected: Vec<Expect>) -> StandIn {
        StandIn::serve(Script::ordered(expected)).await
    }

    /// Starts serving `expected` in any order: each request takes the first unused expectation it
    /// matches (for several watchers running at once). Each expectation is used once.
    pub async fn start_unordered(expected: Vec<Expect>) -> StandIn {
        StandIn::serve(Script::unordered(expected)).await
    }

    async fn serve(script: Script) -> StandIn {
        let script = Arc::new(Mutex::new(script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = Router::new().fallback(handle).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kube-standin-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {url}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\ncurrent-context: standin\nusers:\n- name: standin\n  user:\n    token: {TOKEN}\n"
        );
        std::fs::write(&kubeconfig, yaml).expect("write kubeconfig");
        StandIn {
            url,
            kubeconfig,
            script,
            _dir: TempDir(dir),
        }
    }

    /// Every request seen, as `METHOD path?query`.
    pub fn seen(&self) -> Vec<String> {
        self.script.lock().unwrap().seen.clone()
    }

    /// Fails with every mismatch and every expectation not met.
    pub fn finish(&self) {
        let s = self.script.lock().unwrap();
        let mut problems = s.problems.clone();
        for e in s.unmet() {
            problems.push(format!("expected but never received: {}", e.describe()));
        }
        assert!(
            problems.is_empty(),
            "stand-in API server:\n  {}\nrequests seen:\n  {}",
            problems.join("\n  "),
            s.seen.join("\n  ")
        );
    }
}

async fn handle(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let incoming = read(request).await;
    let mut s = script.lock().unwrap();
    match s.take(&incoming) {
        Ok(i) => answer(&s.expected[i].answer, &incoming.body),
        Err((401, _)) => reply(401, status(401, "Unauthorized", "Unauthorized")),
        Err((code, message)) => reply(code, status(code, "InternalError", &message)),
    }
}

/// Everything the matcher looks at, read from the request.
async fn read(request: Request) -> Incoming {
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let headers = request.headers();
    let authorised = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
    let (method, path) = (
        request.method().to_string(),
        request.uri().path().to_string(),
    );
    let bytes = to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Incoming {
        method,
        path,
        query,
        content_type,
        body,
        authorised,
    }
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(a: &Reply, body: &Value) -> Response {
    match a {
        Reply::Json(f) => {
            let (code, value) = f(body);
            reply(code, value)
        }
        Reply::Stream(events, gap) => {
            let (events, gap) = (events.clone(), *gap);
            let lines = futures_util::stream::unfold(0usize, move |i| {
                let event = events.get(i).cloned();
                async move {
                    match event {
                        Some(e) => {
                            if i > 0 {
                                tokio::time::sleep(gap).await;
                            }
                            Some((Ok::<_, std::io::Error>(format!("{e}\n")), i + 1))
                        }
                        // Held open, as a real watch is until its timeout.
                        None => std::future::pending().await,
                    }
                }
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(lines),
            )
                .into_response()
        }
    }
}

fn reply(code: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("metadata.name%3Dweb"), "metadata.name=web");
        assert_eq!(decode("a+b%2Cc"), "a b,c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
