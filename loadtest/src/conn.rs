//! Connections: hyper's client connections driven directly, one request at a time on each (the
//! way oha and wrk work), instead of a pooled general-purpose client. A pool lookup, per-request
//! header maps and redirects cost more than the request itself against a fast server; with owned
//! connections the load tester reaches wrk's rate (BENCHMARKS.md).
//!
//! HTTP/1.1 keep-alive, or h2c with prior knowledge, where slots may share a connection as
//! streams (`--streams-per-connection`; gRPC's default is 100 streams per connection, as gRPC
//! clients multiplex). gRPC answers are read to their trailers for `grpc-status`. A connection that
//! fails is dropped and the next request on its slot reconnects; with `--connection-lifetime` one is also replaced once it
//! is that old (a Service balances connections, not requests).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::check::Check;
use crate::payload::Payload;
use crate::stats::Class;
use crate::LoadError;

/// Where requests go, and how.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` to connect to.
    addr: String,
    /// The request's URI (absolute path and query) and `Host`.
    uri: hyper::Uri,
    host: String,
    h2c: bool,
    timeout: Duration,
    /// gRPC: `te: trailers` on requests, `grpc-status` read from answers.
    pub grpc: bool,
    /// Slots that share one HTTP/2 connection (1 over HTTP/1.1).
    pub streams: usize,
    /// `--connection-lifetime`: reconnect a connection this old before its next request.
    pub lifetime: Option<Duration>,
    /// Decodes the first successful answer on each connection.
    pub check: Option<Arc<Check>>,
}

/// One open connection.
pub struct Conn {
    sender: Sender,
    opened: tokio::time::Instant,
    /// Whether an answer on it has been decoded.
    checked: bool,
}

impl Conn {
    /// Another slot on the same HTTP/2 connection (a stream of its own per request).
    fn share(&self) -> Option<Conn> {
        match &self.sender {
            Sender::H2(s) => Some(Conn {
                sender: Sender::H2(s.clone()),
                opened: self.opened,
                checked: false,
            }),
            Sender::H1(_) => None,
        }
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Target {
    /// `base` is the server's URL (`http://host:port`), `path` the request path.
    pub fn new(base: &str, path: &str, h2c: bool, timeout: Duration) -> Result<Target, LoadError> {
        let bad = |why: &str| LoadError::Usage(format!("--url {base}: {why}"));
        let uri: hyper::Uri = base.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "only http:// URLs are supported (plain HTTP/1.1 or h2c)",
            ));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let base_path = uri.path().trim_end_matches('/');
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            uri: format!("{base_path}{path}")
                .parse()
                .map_err(|_| bad("bad path"))?,
            host: authority.to_string(),
            h2c,
            timeout,
            grpc: false,
            streams: 1,
            lifetime: None,
            check: None,
        })
    }

    /// Opens `n` connections at once, before the load starts (as wrk opens its `-c` connections):
    /// the tester's memory is then in place from the first second, and a latency spike later
    /// finds open connections instead of opening new ones. A connection that cannot be opened
    /// leaves its slot empty; the first request on it connects.
    pub async fn open(&self, n: usize) -> Vec<Option<Conn>> {
        let per = if self.h2c { self.streams.max(1) } else { 1 };
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n.div_ceil(per) {
            let target = self.clone();
            set.spawn(async move {
                tokio::time::timeout(target.timeout, target.connect())
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        }
        let mut slots = Vec::with_capacity(n);
        while let Some(conn) = set.join_next().await {
            let conn = conn.ok().flatten();
            for _ in 1..per {
                slots.push(conn.as_ref().and_then(Conn::share));
            }
            slots.push(conn);
        }
        slots.truncate(n);
        slots
    }

    pub async fn connect(&self) -> Result<Conn, Class> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|_| Class::Transport)?;
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        if self.h2c {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| Class::Transport)?;
            tokio::spawn(conn);
            Ok(Conn {
                sender: Sender::H2(send),
                opened: tokio::time::Instant::now(),
                checked: false,
            })
        } else {
            let (send, conn) = http1::handshake(io).await.map_err(|_| Class::Transport)?;
            tokio::spawn(conn);
            Ok(Conn {
                sender: Sender::H1(send),
                opened: tokio::time::Instant::now(),
                checked: false,
            })
        }
    }

    /// Sends one request on `slot` (connecting first if it is empty) and reads the whole answer.
    /// On a transport error or timeout the connection is dropped.
    pub async fn send(&self, slot: &mut Option<Conn>, p: &Payload) -> Class {
        match tokio::time::timeout(self.timeout, self.exchange(slot, p)).await {
            Ok(Ok(class)) => class,
            Ok(Err(class)) => {
                *slot = None;
                class
            }
            Err(_) => {
                *slot = None;
                Class::Timeout
            }
        }
    }

    async fn exchange(&self, slot: &mut Option<Conn>, p: &Payload) -> Result<Class, Class> {
        let mut req = Request::post(self.uri.clone()).header("content-type", p.content_type);
        if let Some(n) = p.header_length {
            req = req.header(protocol::wire::HEADER_LENGTH, n);
        }
        if !self.h2c {
            req = req.header("host", &self.host);
        }
        if self.grpc {
            req = req.header("te", "trailers");
        }
        let req = req
            .body(Full::new(p.body.clone()))
            .map_err(|_| Class::Transport)?;
        // An old connection is replaced, so that pods added by the HPA get their share of the
        // load: behind a Service, a connection stays with the pod it was first balanced to.
        if let (Some(conn), Some(lifetime)) = (slot.as_ref(), self.lifetime) {
            if conn.opened.elapsed() >= lifetime {
                *slot = None;
            }
        }
        let conn = match slot {
            Some(conn) => conn,
            None => slot.insert(self.connect().await?),
        };
        let response = match &mut conn.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|_| Class::Transport)?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|_| Class::Transport)?;
                s.send_request(req).await
            }
        }
        .map_err(|_| Class::Transport)?;
        let status = response.status();
        if self.grpc && status.is_success() {
            return self.grpc_answer(conn, response).await;
        }
        if !status.is_success() {
            drain(response.into_body()).await?;
            return Ok(Class::Status(status.as_u16()));
        }
        match self.check.as_ref().filter(|_| !conn.checked) {
            None => drain(response.into_body()).await.map(|_| Class::Ok),
            Some(check) => {
                conn.checked = true;
                let header_length = response
                    .headers()
                    .get(protocol::wire::HEADER_LENGTH)
                    .map(|v| v.as_bytes().to_vec());
                let body = response.into_body().collect().await;
                let body = body.map_err(|_| Class::Transport)?.to_bytes();
                Ok(match check.verify(header_length.as_deref(), &body) {
                    true => Class::Ok,
                    false => Class::Undecodable,
                })
            }
        }
    }
}

impl Target {
    /// A gRPC answer: read to its trailers; `grpc-status` 0 is success (in the headers for a
    /// trailers-only error answer, else in the trailers).
    async fn grpc_answer(
        &self,
        conn: &mut Conn,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Class, Class> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|_| Class::Transport)?;
        let code = grpc_status(&parts.headers).or_else(|| body.trailers().and_then(grpc_status));
        match code {
            Some(0) => {}
            Some(code) => return Ok(Class::Grpc(code)),
            None => return Err(Class::Transport), // the stream ended without a status
        }
        match self.check.as_ref().filter(|_| !conn.checked) {
            None => Ok(Class::Ok),
            Some(check) => {
                conn.checked = true;
                Ok(match check.verify(None, &body.to_bytes()) {
                    true => Class::Ok,
                    false => Class::Undecodable,
                })
            }
        }
    }
}

fn grpc_status(headers: &hyper::HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Reads an answer's body to its end without keeping it.
async fn drain(mut body: hyper::body::Incoming) -> Result<(), Class> {
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| Class::Transport)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::new(
            "http://127.0.0.1:8080/",
            "/v2/models/m/infer",
            false,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.uri, "/v2/models/m/infer");
        let t = Target::new("http://svc.ns", "/predict", true, Duration::from_secs(1)).unwrap();
        assert_eq!(t.addr, "svc.ns:80");
        assert!(Target::new("https://x", "/", false, Duration::from_secs(1)).is_err());
        assert!(Target::new("not a url", "/", false, Duration::from_secs(1)).is_err());
    }
}
