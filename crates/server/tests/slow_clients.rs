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
