//! Connections: hyper's client connections driven directly, one request at a time on each (the
//! way oha and wrk work), instead of a pooled general-purpose client. A pool lookup, per-request
//! header maps and redirects cost more than the request itself against a fast server; with owned
//! connections the load tester reaches wrk's rate (BENCHMARKS.md).
//!
//! HTTP/1.1 keep-alive, or h2c with prior knowledge. A connection that fails is dropped and the
//! next request on its slot reconnects; with `--connection-lifetime` one is also replaced once it
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
            lifetime: None,
            check: None,
        })
    }

    /// Opens `n` connections at once, before the load starts (as wrk opens its `-c` connections):
    /// the tester's memory is then in place from the first second, and a latency spike later
    /// finds open connections instead of opening new ones. A connection that cannot be opened
    /// leaves its slot empty; the first request on it connects.
    pub async fn open(&self, n: usize) -> Vec<Option<Conn>> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
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
            slots.push(conn.ok().flatten());
        }
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
