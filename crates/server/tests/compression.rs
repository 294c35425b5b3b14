//! HTTP compression, as tritonclient's `request_compression_algorithm` and
//! `response_compression_algorithm` use it: gzip and deflate request bodies answer exactly as plain
//! ones, responses above a kilobyte come back compressed when the client accepts it, other
//! encodings and corrupt bodies get clear errors, and a zip bomb against the real binary is a 413
//! the client reads while the server's memory stays flat.

mod common;

use std::io::Write;

use common::{Process, TestServer};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use serde_json::{json, Value};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// HTTP's `deflate` is the zlib format (RFC 9110, 8.4.1.2), as tritonclient sends it.
fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::GzDecoder::new(Vec::new());
    d.write_all(bytes).unwrap();
    d.finish().unwrap()
}

async fn post(
    http: &reqwest::Client,
    url: String,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http.post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_answer_like_plain_ones_and_responses_compress_when_accepted() {
    let server = TestServer::demo().await;
    let http = reqwest::Client::new();
    let digits = server.url("/v2/models/digits/infer");
    let row = &common::heldout().inputs[0];
    let body = serde_json::to_vec(
        &json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}]}),
    )
    .unwrap();
    let plain: Value = post(&http, digits.clone(), body.clone(), &[])
        .await
        .json()
        .await
        .unwrap();
    for (encoding, bytes) in [("gzip", gzip(&body)), ("deflate", deflate(&body))] {
        let r = post(
            &http,
            digits.clone(),
            bytes,
            &[("content-encoding", encoding)],
        )
        .await;
        assert_eq!(r.status(), 200, "{encoding}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["outputs"], plain["outputs"], "{encoding}");
    }

    // digits' answer is a few hundred bytes: not worth compressing.
    let r = post(
        &http,
        digits.clone(),
        body.clone(),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert!(r.headers().get("content-encoding").is_none());
    // mlp's is 1000 floats of JSON: compressed when the client takes gzip, plain otherwise.
    let mlp = server.url("/v2/models/mlp/infer");
    let input = serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 1024], "datatype": "FP32", "data": vec![0.5; 1024]}]})).unwrap();
    let plain = post(&http, mlp.clone(), input.clone(), &[])
        .await
        .bytes()
        .await
        .unwrap();
    let r = post(&http, mlp, input, &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let packed = r.bytes().await.unwrap();
    assert!(
        packed.len() < plain.len(),
        "{} >= {}",
        packed.len(),
        plain.len()
    );
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&gunzip(&packed)).unwrap(),
        serde_json::from_slice(&plain).unwrap(),
    );
    assert_eq!(a, b);

    // Another encoding: 415, JSON, and what is taken instead.
    let r = post(
        &http,
        digits.clone(),
        body.clone(),
        &[("content-encoding", "br")],
    )
    .await;
    assert_eq!(r.status(), 415);
    let accepted = r.headers()["accept-encoding"].to_str().unwrap().to_string();
    assert!(
        accepted.contains("gzip") && accepted.contains("deflate"),
        "{accepted}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "unsupported_encoding", "{v}");
    // A body that says gzip but is not: 400, and the server still serves.
    let r = post(
        &http,
        digits.clone(),
        b"not gzip at all".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "body_read_failed", "{v}");
    assert_eq!(post(&http, digits, body, &[]).await.status(), 200);
    server.stop().await;
}

/// 240 MiB of zeros in ~240 KB of gzip against an 8 MiB body limit: inflated only as far as the
/// limit (the rest, within the drain budget, inflated and dropped so the client can read the
/// answer), never held. The bound is generous (the 8 MiB the limit lets in, twice, and more): the
/// bomb is 5 times the RSS growth allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_gets_413_and_the_server_memory_stays_flat() {
    const INFLATED: usize = 240 << 20;
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..INFLATED >> 20 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 2 << 20, "bomb of {} bytes", bomb.len());
    let models = common::models_dir();
    let server = Process::spawn(&[
        "--model-repository",
        models.to_str().unwrap(),
        "--max-body-size",
        "8MiB",
    ]);
    server.wait_ready().await;
    let http = reqwest::Client::new();
    let url = server.url("/v2/models/digits/infer");
    let before = server.rss();
    for _ in 0..3 {
        let r = post(
            &http,
            url.clone(),
            bomb.clone(),
            &[("content-encoding", "gzip")],
        )
        .await;
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_type"], "payload_too_large", "{v}");
    }
    let grown = server.rss().saturating_sub(before);
    println!(
        "RSS grew {} KiB over three {} MiB bombs",
        grown >> 10,
        INFLATED >> 20
    );
    assert!(grown < 48 << 20, "RSS grew {grown} bytes");
    let row = vec![0.0; 64];
    let body = serde_json::to_vec(
        &json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}]}),
    )
    .unwrap();
    assert_eq!(
        post(&http, url, gzip(&body), &[("content-encoding", "gzip")])
            .await
            .status(),
        200
    );
}
