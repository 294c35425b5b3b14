//! Clients that send too slowly are cut off: headers within --header-timeout (the connection is
//! closed), bodies within --body-timeout (408), and the server keeps answering everyone else.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::Value;
use server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_slow_bodies_get_408() {
    let mut config = ServerConfig::for_repository(common::models_dir());
    config.header_timeout = Duration::from_millis(300);
    config.body_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let addr = server.base.trim_start_matches("http://").to_string();

    // Half a request line, then nothing: the server closes the connection after the header timeout.
    let mut slowloris = TcpStream::connect(&addr).await.unwrap();
    slowloris
        .write_all(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slowloris.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was never closed");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );

    // Complete headers announcing a body that never fully arrives: 408 with a JSON error.
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    slow_body
        .write_all(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        slow_body.read_to_end(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error_type"], "body_timeout");

    // Everyone else is still served.
    let r = reqwest::get(server.url("/v2/health/ready")).await.unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

/// A client that sends a body far over the limit in one go (as Python's http.client does: the
/// whole body, then it reads) gets to read the 413: the server drains what follows the limit
/// (bounded) instead of closing on a client that is still writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_drained_so_the_client_reads_the_413() {
    let mut config = ServerConfig::for_repository(common::models_dir());
    config.max_body_size = 1 << 20;
    let server = TestServer::start(config).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = vec![b' '; 80 << 20];
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body)
        .await
        .expect("the whole 80 MB body is accepted (read and dropped), not cut off");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&answer).contains("payload_too_large") {
        assert!(
            Instant::now() < deadline,
            "no 413 body: {}",
            String::from_utf8_lossy(&answer)
        );
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    server.stop().await;
}
