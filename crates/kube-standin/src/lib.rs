//! A scripted stand-in for the Kubernetes API server, for tests of the deployer and the load tester.
//!
//! A test lists the requests it expects, in order, each with what must be true of it (method, path,
//! exact query parameters, content type, a check of the JSON body) and the answer to give. The
//! server listens on 127.0.0.1:0 and writes a kubeconfig pointing at itself (bearer token
//! [`TOKEN`], checked on every request). Any request that does not match the next expectation is
//! answered 500 and recorded; [`StandIn::finish`] fails the test with every mismatch and every
//! expectation left unmet. Nothing here pretends to be a cluster beyond what a test scripts.
//!
//! Watches: [`Expect::stream`] answers with a real watch stream (newline-delimited `WatchEvent`s,
//! paced by a gap, then held open until the client goes away), and [`StandIn::start_unordered`]
//! lets concurrent watchers' requests match their expectations in any order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The bearer token the kubeconfig carries and every request must present.
pub const TOKEN: &str = "stand-in-token";

type Check = Box<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;
type Answer = Box<dyn Fn(&Value) -> (u16, Value) + Send + Sync>;

/// What an expectation answers.
enum Reply {
    Json(Answer),
    /// A watch stream: these events, `gap` apart, then nothing until the client disconnects.
    Stream(Vec<Value>, Duration),
}

/// How often an expectation may match.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Times {
    Once,
    /// One or more times in a row (polling); the script moves on when a request matches the next one.
    Repeatedly,
}

/// One expected request and its answer.
pub struct Expect {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Option<Check>,
    answer: Reply,
    times: Times,
}

impl Expect {
    pub fn new(method: &str, path: &str) -> Expect {
        Expect {
            method: method.into(),
            path: path.into(),
            query: BTreeMap::new(),
            content_type: None,
            body: None,
            answer: Reply::Json(Box::new(|_| (200, json!({})))),
            times: Times::Once,
        }
    }

    pub fn get(path: &str) -> Expect {
        Expect::new("GET", path)
    }

    /// A server-side apply: PATCH with `application/apply-patch+yaml` and `fieldManager`.
    pub fn apply(path: &str, field_manager: &str) -> Expect {
        Expect::new("PATCH", path)
            .query("fieldManager", field_manager)
            .content_type("application/apply-patch+yaml")
    }

    /// This query parameter must be present with this value (and no parameter may be unlisted).
    pub fn query(mut self, key: &str, value: &str) -> Expect {
        self.query.insert(key.into(), value.into());
        self
    }

    pub fn content_type(mut self, ct: &str) -> Expect {
        self.content_type = Some(ct.into());
        self
    }

    /// A check of the request's JSON body; the error says what is wrong.
    pub fn body(
        mut self,
        check: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    ) -> Expect {
        self.body = Some(Box::new(check));
        self
    }

    /// The body must equal `want` exactly.
    pub fn body_eq(self, want: Value) -> Expect {
        self.body(move |got| {
            if *got == want {
                Ok(())
            } else {
                Err(format!("body differs:\n got {got}\nwant {want}"))
            }
        })
    }

    pub fn respond(mut self, status: u16, body: Value) -> Expect {
        self.answer = Reply::Json(Box::new(move |_| (status, body.clone())));
        self
    }

    /// Answers from the request body (e.g. echo an applied object back with a resourceVersion).
    pub fn respond_with(
        mut self,
        f: impl Fn(&Value) -> (u16, Value) + Send + Sync + 'static,
    ) -> Expect {
        self.answer = Reply::Json(Box::new(f));
        self
    }

    /// Answers with a watch stream: each event (`{"type": "MODIFIED", "object": …}`) on its own
    /// line, `gap` apart, then the stream stays open (as a real watch does until its timeout).
    pub fn stream(mut self, events: Vec<Value>, gap: Duration) -> Expect {
        self.answer = Reply::Stream(events, gap);
        self
    }

    /// May match several requests in a row (polling).
    pub fn repeatedly(mut self) -> Expect {
        self.times = Times::Repeatedly;
        self
    }

    fn describe(&self) -> String {
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{} {}{}",
            self.method,
            self.path,
            if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            }
        )
    }

    fn mismatch(
        &self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        ct: Option<&str>,
        body: &Value,
    ) -> Option<String> {
        if self.method != method || self.path != path {
            return Some("method or path".into());
        }
        if &self.query != query {
            return Some(format!("query {query:?}, expected {:?}", self.query));
        }
        if let Some(want) = &self.content_type {
            if ct != Some(want.as_str()) {
                return Some(format!("content type {ct:?}, expected {want}"));
            }
        }
        match &self.body {
            Some(check) => check(body).err(),
            None => None,
        }
    }
}

/// A Kubernetes `Status` body, as the API server sends with errors.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

#[derive(Default)]
struct Script {
    expected: Vec<Expect>,
    next: usize,
    /// Requests matched by the current `Repeatedly` expectation.
    repeats: usize,
    problems: Vec<String>,
    seen: Vec<String>,
    /// Any-order matching: which expectations have been used.
    unordered: Option<Vec<bool>>,
}

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
        StandIn::serve(Script {
            expected,
            ..Default::default()
        })
        .await
    }

    /// Starts serving `expected` in any order: each request takes the first unused expectation it
    /// matches (for several watchers running at once). Each expectation is used once.
    pub async fn start_unordered(expected: Vec<Expect>) -> StandIn {
        StandIn::serve(Script {
            unordered: Some(vec![false; expected.len()]),
            expected,
            ..Default::default()
        })
        .await
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
        let unmet: Vec<&Expect> = match &s.unordered {
            Some(used) => s
                .expected
                .iter()
                .zip(used)
                .filter(|(_, used)| !**used)
                .map(|(e, _)| e)
                .collect(),
            None => {
                let done = s.next
                    + usize::from(
                        s.next < s.expected.len()
                            && s.expected[s.next].times == Times::Repeatedly
                            && s.repeats > 0,
                    );
                s.expected.iter().skip(done).collect()
            }
        };
        for e in unmet {
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
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
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
    let auth_ok = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let ct = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
    let bytes = to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    let mut s = script.lock().unwrap();
    let line = format!(
        "{method} {path}{}",
        if query.is_empty() {
            String::new()
        } else {
            format!(
                "?{}",
                query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            )
        }
    );
    s.seen.push(line.clone());
    if !auth_ok {
        s.problems
            .push(format!("{line}: missing or wrong bearer token"));
        return reply(401, status(401, "Unauthorized", "Unauthorized"));
    }
    if let Some(used) = &s.unordered {
        let found = (0..s.expected.len()).find(|&i| {
            !used[i]
                && s.expected[i]
                    .mismatch(&method, &path, &query, ct.as_deref(), &body)
                    .is_none()
        });
        let Some(i) = found else {
            s.problems
                .push(format!("{line}: matches no unused expectation"));
            return reply(
                500,
                status(500, "InternalError", "stand-in: unexpected request"),
            );
        };
        if let Some(used) = s.unordered.as_mut() {
            used[i] = true;
        }
        return answer(&s.expected[i].answer, &body);
    }
    loop {
        let Some(e) = s.expected.get(s.next) else {
            s.problems
                .push(format!("unexpected request after the script ended: {line}"));
            return reply(
                500,
                status(500, "InternalError", "stand-in: unexpected request"),
            );
        };
        match e.mismatch(&method, &path, &query, ct.as_deref(), &body) {
            None => {
                let response = answer(&e.answer, &body);
                if e.times == Times::Once {
                    s.next += 1;
                } else {
                    s.repeats += 1;
                }
                return response;
            }
            // A satisfied repeated expectation gives way to the next one.
            Some(_) if e.times == Times::Repeatedly && s.repeats > 0 => {
                s.next += 1;
                s.repeats = 0;
            }
            Some(why) => {
                let expected = e.describe();
                s.problems
                    .push(format!("{line}: expected {expected} ({why})"));
                return reply(
                    500,
                    status(
                        500,
                        "InternalError",
                        &format!("stand-in: expected {expected}"),
                    ),
                );
            }
        }
    }
}

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
