//! What a test expects: one request (method, path, exact query, content type, a check of the JSON
//! body), its answer, and how often it may match.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

pub(crate) type Check = Box<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;
pub(crate) type Answer = Box<dyn Fn(&Value) -> (u16, Value) + Send + Sync>;

/// What an expectation answers.
pub(crate) enum Reply {
    Json(Answer),
    /// A watch stream: these events, `gap` apart, then nothing until the client disconnects.
    Stream(Vec<Value>, Duration),
}

/// How often an expectation may match.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Times {
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
    pub(crate) answer: Reply,
    pub(crate) times: Times,
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

    pub(crate) fn describe(&self) -> String {
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

    /// Why `req` does not match, or `None` when it does.
    pub(crate) fn mismatch(&self, req: &Incoming) -> Option<String> {
        if self.method != req.method || self.path != req.path {
            return Some("method or path".into());
        }
        if self.query != req.query {
            return Some(format!("query {:?}, expected {:?}", req.query, self.query));
        }
        if let Some(want) = &self.content_type {
            let ct = req.content_type.as_deref();
            if ct != Some(want.as_str()) {
                return Some(format!("content type {ct:?}, expected {want}"));
            }
        }
        match &self.body {
            Some(check) => check(&req.body).err(),
            None => None,
        }
    }
}

/// A request as the matcher sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Incoming {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Without parameters (`; charset=...`).
    pub content_type: Option<String>,
    /// The JSON body; `Null` when empty, a string when it is not JSON.
    pub body: Value,
    /// Whether it carried the bearer token.
    pub authorised: bool,
}

impl Incoming {
    /// `METHOD path?query`, as [`crate::StandIn::seen`] lists requests.
    pub fn line(&self) -> String {
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match q.is_empty() {
            true => format!("{} {}", self.method, self.path),
            false => format!("{} {}?{}", self.method, self.path, q.join("&")),
        }
    }
}
