//! Every row of the README's error table (the status-code table), through real HTTP: the status, the JSON error
//! body with its stable `error_type`, and that the server still answers the next valid request.

mod common;

use std::time::{Duration, Instant};

use common::{fixture_with, metric, TestServer};
use protocol::wire;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use server::ServerConfig;

fn valid() -> Value {
    json!({"inputs": [
        {"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "b", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}
    ]})
}

fn with_a(a: Value) -> String {
    json!({"inputs": [a, {"name": "b", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]})
        .to_string()
}

/// (what, url, body, extra headers, expected status, expected error_type)
type Case = (
    &'static str,
    String,
    String,
    Vec<(&'static str, String)>,
    u16,
    &'static str,
);

async fn expect_error(r: reqwest::Response, status: u16, kind: &str, what: &str) {
    assert_eq!(r.status().as_u16(), status, "{what}");
    let body: Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
    assert!(
        body["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(body["error_type"], kind, "{what}: {body}");
}

async fn still_serves(http: &Client, server: &TestServer, what: &str) {
    let r = http
        .post(server.url("/v2/models/multi/infer"))
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "after {what}, a valid request failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_error_row() {
    let mut config =
        ServerConfig::for_repository(fixture_with("status", &["multi", "fails", "broken"]));
    config.max_body_size = 1 << 20;
    let server = TestServer::start(config).await;
    let http = Client::new();
    let infer = server.url("/v2/models/multi/infer");
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<Case> = vec![
        ("malformed JSON", infer.clone(), "{\"inputs\": [".into(), vec![], 400, "malformed_json"),
        ("JSON that is not a request", infer.clone(), "[1, 2]".into(), vec![], 400, "malformed_json"),
        ("nesting beyond the JSON depth limit", infer.clone(), format!("{{\"inputs\": [{{\"name\": \"a\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": {deep}}}]}}"), vec![], 400, "malformed_json"),
        ("wrong shape", infer.clone(), with_a(json!({"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]})), vec![], 400, "invalid_input"),
        ("wrong datatype", infer.clone(), with_a(json!({"name": "a", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]})), vec![], 400, "invalid_input"),
        ("datatype without a libtorch kind", infer.clone(), with_a(json!({"name": "a", "shape": [1, 3], "datatype": "UINT32", "data": [1, 2, 3]})), vec![], 400, "invalid_input"),
        ("wrong element count", infer.clone(), with_a(json!({"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]})), vec![], 400, "invalid_input"),
        ("nested data that disagrees with the shape", infer.clone(), with_a(json!({"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2], [3]]})), vec![], 400, "invalid_input"),
        ("/predict rows nested unlike the shape", server.url("/predict"), json!({"model": "fails", "inputs": [[1, 2], [3, [4]]]}).to_string(), vec![], 400, "invalid_input"),
        ("element of the wrong type", infer.clone(), with_a(json!({"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, "two", 3]})), vec![], 400, "invalid_input"),
        ("shape whose size overflows", infer.clone(), with_a(json!({"name": "a", "shape": [4294967296u64, 4294967296u64], "datatype": "FP32", "data": [1]})), vec![], 400, "invalid_input"),
        ("unknown input name", infer.clone(), json!({"inputs": [{"name": "zzz", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).to_string(), vec![], 400, "invalid_input"),
        ("missing input", infer.clone(), json!({"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).to_string(), vec![], 400, "invalid_input"),
        ("unknown output", infer.clone(), { let mut v = valid(); v["outputs"] = json!([{"name": "nope"}]); v.to_string() }, vec![], 400, "invalid_input"),
        ("binary header longer than the body", infer.clone(), valid().to_string(), vec![(wire::HEADER_LENGTH, "99999".into())], 400, "invalid_input"),
        ("too many rows", infer.clone(), with_a(json!({"name": "a", "shape": [9, 3], "datatype": "FP32", "data": vec![0; 27]})), vec![], 400, "invalid_input"),
        ("unknown model", server.url("/v2/models/nope/infer"), valid().to_string(), vec![], 404, "model_not_found"),
        ("unknown version", server.url("/v2/models/multi/versions/7/infer"), valid().to_string(), vec![], 404, "model_not_found"),
        ("unknown endpoint", server.url("/v3/nothing"), valid().to_string(), vec![], 404, "model_not_found"),
        ("body over --max-body-size", infer.clone(), format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20)), vec![], 413, "payload_too_large"),
        ("model that failed to load", server.url("/v2/models/broken/infer"), json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).to_string(), vec![], 503, "model_not_ready"),
        ("libtorch error in forward", server.url("/v2/models/fails/infer"), json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 5000]}]}).to_string(), vec![], 500, "inference_failed"),
        ("load without --model-control explicit", server.url("/v2/repository/models/multi/load"), String::new(), vec![], 403, "model_control_disabled"),
        ("unload without --model-control explicit", server.url("/v2/repository/models/multi/unload"), String::new(), vec![], 403, "model_control_disabled"),
    ];
    for (what, url, body, headers, status, kind) in cases {
        let mut req = http.post(&url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        expect_error(req.send().await.unwrap(), status, kind, what).await;
        still_serves(&http, &server, what).await;
    }
    // The 500 names the libtorch error's first line, not a C++ backtrace.
    let r = http
        .post(server.url("/v2/models/fails/infer"))
        .json(&json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 5000]}]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("input value above 1000"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    server.stop().await;
}

/// Polls /metrics until `torchship_inflight_executions` of `model` is `want` (bounded).
async fn wait_inflight(http: &Client, server: &TestServer, model: &str, want: f64) {
    let what = format!("inflight never reached {want}");
    wait_gauge(
        http,
        server,
        "torchship_inflight_executions",
        model,
        want,
        &what,
    )
    .await;
}

/// Polls /metrics until `gauge` of `model` (version 1) is `want`, or fails with `what` (bounded).
async fn wait_gauge(
    http: &Client,
    server: &TestServer,
    gauge: &str,
    model: &str,
    want: f64,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = common::scrape(http, &server.base).await;
        if metric(&text, gauge, &[("model", model), ("version", "1")]) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn slow(iterations: u64, timeout_us: Option<u64>) -> Value {
    let mut v = json!({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [iterations]}]});
    if let Some(t) = timeout_us {
        v["parameters"] = json!({"timeout": t});
    }
    v
}

/// Iterations of the slow model that keep a forward thread busy for seconds on any machine we run on.
const BUSY: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_429_and_client_timeout_is_408() {
    let server = TestServer::start(ServerConfig::for_repository(fixture_with(
        "queue",
        &["slow"],
    )))
    .await;
    let http = Client::new();
    let url = server.url("/v2/models/slow/infer");
    let a = tokio::spawn(http.post(&url).json(&slow(BUSY, None)).send());
    wait_inflight(&http, &server, "slow", 1.0).await;
    // The queue holds one request: B waits in it, with its own 200 ms timeout.
    let b = tokio::spawn(http.post(&url).json(&slow(0, Some(200_000))).send());
    wait_gauge(
        &http,
        &server,
        "torchship_pending_requests",
        "slow",
        1.0,
        "B never queued",
    )
    .await;
    let started = Instant::now();
    let c = http.post(&url).json(&slow(0, None)).send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a full queue must answer at once"
    );
    assert_eq!(c.headers()["retry-after"], "1");
    expect_error(c, 429, "queue_full", "full queue").await;

    expect_error(
        b.await.unwrap().unwrap(),
        408,
        "client_timeout",
        "client timeout",
    )
    .await;
    assert_eq!(a.await.unwrap().unwrap().status(), StatusCode::OK);
    // B was answered 408 at its deadline, but its entry holds the queue's one slot until the
    // batcher reaches it, just after A's pass: until then a new request is (rightly) queue_full.
    let expired = "B's expired entry never left the queue";
    wait_gauge(
        &http,
        &server,
        "torchship_pending_requests",
        "slow",
        0.0,
        expired,
    )
    .await;
    let r = http.post(&url).json(&slow(0, None)).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "after the overload, a valid request failed"
    );
    // B's deadline had passed when its turn came: it was dropped, never run.
    let text = common::scrape(&http, &server.base).await;
    assert_eq!(
        metric(
            &text,
            "torchship_execution_total",
            &[("model", "slow"), ("version", "1")]
        ),
        2.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_deadline_is_504() {
    let mut config = ServerConfig::for_repository(fixture_with("deadline", &["slow"]));
    config.default_timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let http = Client::new();
    let url = server.url("/v2/models/slow/infer");
    let r = http
        .post(&url)
        .json(&slow(BUSY, None))
        .send()
        .await
        .unwrap();
    expect_error(r, 504, "deadline_exceeded", "server deadline").await;
    // The forward pass it started runs to its end; then the model serves again.
    wait_inflight(&http, &server, "slow", 0.0).await;
    let r = http.post(&url).json(&slow(0, None)).send().await.unwrap();
    assert_eq!(r.status(), 200, "after a 504, a valid request failed");
    server.stop().await;
}

/// The router's own refusals get the same JSON body as every other error, and are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_a_json_405_and_an_undecodable_path_a_json_400() {
    let server = TestServer::start(ServerConfig::for_repository(fixture_with(
        "status405",
        &["multi"],
    )))
    .await;
    let http = Client::new();
    let r = http
        .get(server.url("/v2/models/multi/infer"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("allow").map(|v| v.to_str().unwrap()),
        Some("POST"),
        "Allow header"
    );
    expect_error(r, 405, "method_not_allowed", "GET on infer").await;
    let r = http
        .post(server.url("/v2/models/%FF/infer"))
        .json(&valid())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "a model name that is not UTF-8").await;
    still_serves(&http, &server, "the router's refusals").await;

    let text = common::scrape(&http, &server.base).await;
    let counted = |route: &str, method: &str, status: &str| {
        metric(
            &text,
            "torchship_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(
        counted("/v2/models/{model}/infer", "GET", "405"),
        1.0,
        "{text}"
    );
    assert_eq!(
        counted("/v2/models/{model}/infer", "POST", "400"),
        1.0,
        "{text}"
    );
    server.stop().await;
}

/// `--max-inflight` reached: 429 `overloaded` at once, with Retry-After, counted in
/// torchship_request_total under the model like every other outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inflight_limit_is_429_overloaded_and_counted() {
    let mut config = ServerConfig::for_repository(fixture_with("inflight", &["slow"]));
    config.max_inflight = 1;
    let server = TestServer::start(config).await;
    let http = Client::new();
    let url = server.url("/v2/models/slow/infer");
    let a = tokio::spawn(http.post(&url).json(&slow(BUSY, None)).send());
    wait_inflight(&http, &server, "slow", 1.0).await;
    let b = http.post(&url).json(&slow(0, None)).send().await.unwrap();
    assert_eq!(b.headers()["retry-after"], "1");
    expect_error(b, 429, "overloaded", "in-flight limit").await;
    assert_eq!(a.await.unwrap().unwrap().status(), StatusCode::OK);
    let r = http.post(&url).json(&slow(0, None)).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "after the overload, a valid request failed"
    );
    let text = common::scrape(&http, &server.base).await;
    let outcome = |o: &str| {
        metric(
            &text,
            "torchship_request_total",
            &[
                ("model", "slow"),
                ("version", "1"),
                ("protocol", "http"),
                ("outcome", o),
            ],
        )
    };
    assert_eq!(outcome("overloaded"), 1.0, "{text}");
    assert_eq!(outcome("success"), 2.0, "{text}");
    server.stop().await;
}
