//! `server --healthcheck`: the container image's `HEALTHCHECK`, so the runtime image needs no curl
//! or shell. One plain HTTP/1.1 GET of `/v2/health/live` on the configured host and port (loopback
//! when listening on all addresses); healthy only on `200`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Probes the live endpoint; the error says what went wrong, for `docker inspect`.
pub fn probe(host: IpAddr, port: u16, timeout: Duration) -> Result<(), String> {
    let host = match host {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        a => a,
    };
    let addr = SocketAddr::new(host, port);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status_line = status_line.lines().next().unwrap_or("");
    if status_line.starts_with("HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(format!("{addr}/v2/health/live answered '{status_line}'"))
    }
}
