//! `/metrics` after a scripted sequence of requests shows exactly the expected increments.

mod common;

use common::{heldout, metric, TestServer};
use reqwest::Client;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_requests_move_exactly_the_expected_counters() {
    let server = TestServer::demo().await;
    let http = Client::new();
    let scrape = || async {
        http.get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    let rows = &heldout().inputs[..3];
    let infer = server.url("/v2/models/digits/infer");

    // 1. two rows through v2, 2. one row through /predict: two successes, three rows, two passes.
    let ok = json!({"inputs": [{"name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": &rows[..2]}]});
    assert_eq!(
        http.post(&infer).json(&ok).send().await.unwrap().status(),
        200
    );
    let p = json!({"model": "digits", "inputs": [&rows[2]]});
    assert_eq!(
        http.post(server.url("/predict"))
            .json(&p)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // 3. a wrong element count, 4. malformed JSON, 5. an unknown model.
    let bad = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [1, 2]}]});
    assert_eq!(
        http.post(&infer).json(&bad).send().await.unwrap().status(),
        400
    );
    assert_eq!(
        http.post(&infer).body("{").send().await.unwrap().status(),
        400
    );
    assert_eq!(
        http.post(server.url("/v2/models/nope/infer"))
            .json(&ok)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let after = scrape().await;
    let d = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - common::metric_or_zero(&before, name, labels)
    };
    let mv: &[(&str, &str)] = &[("model", "digits"), ("version", "1")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = mv.to_vec();
        l.push(extra);
        l
    };
    // The request counter also says by which protocol.
    let outcome = |o: &'static str| {
        with(("outcome", o))
            .into_iter()
            .chain([("protocol", "http")])
            .collect::<Vec<_>>()
    };
    assert_eq!(d("torchship_request_total", &outcome("success")), 2.0);
    assert_eq!(d("torchship_request_total", &outcome("invalid_input")), 1.0);
    assert_eq!(
        d("torchship_request_total", &outcome("malformed_json")),
        1.0
    );
    assert_eq!(d("torchship_inference_total", mv), 3.0);
    assert_eq!(d("torchship_execution_total", mv), 2.0);
    assert_eq!(d("torchship_batch_size_count", mv), 2.0);
    assert_eq!(d("torchship_batch_size_sum", mv), 3.0);
    assert_eq!(d("torchship_batch_size_bucket", &with(("le", "1"))), 1.0);
    assert_eq!(d("torchship_batch_size_bucket", &with(("le", "2"))), 2.0);
    assert_eq!(d("torchship_queue_duration_seconds_count", mv), 2.0);
    assert_eq!(d("torchship_request_duration_seconds_count", mv), 4.0);
    for phase in ["input", "forward", "output"] {
        assert_eq!(
            d(
                "torchship_compute_duration_seconds_count",
                &with(("phase", phase))
            ),
            2.0,
            "{phase}"
        );
    }
    // Warm-up passes are not served requests: absolute counts agree with executions.
    assert_eq!(
        metric(
            &after,
            "torchship_compute_duration_seconds_count",
            &with(("phase", "forward"))
        ),
        metric(&after, "torchship_execution_total", mv)
    );
    // mlp saw nothing.
    assert_eq!(
        d(
            "torchship_inference_total",
            &[("model", "mlp"), ("version", "1")]
        ),
        0.0
    );
    // Gauges: idle again, loaded, ready.
    assert_eq!(metric(&after, "torchship_pending_requests", mv), 0.0);
    assert_eq!(metric(&after, "torchship_inflight_executions", mv), 0.0);
    assert_eq!(metric(&after, "torchship_model_ready", mv), 1.0);
    assert!(metric(&after, "torchship_model_load_duration_seconds", mv) > 0.0);
    // HTTP by route template, never the raw path.
    let route = |r: &'static str, status: &'static str| {
        [("route", r), ("method", "POST"), ("status", status)]
    };
    assert_eq!(
        d(
            "torchship_http_requests_total",
            &route("/v2/models/{model}/infer", "200")
        ),
        1.0
    );
    assert_eq!(
        d(
            "torchship_http_requests_total",
            &route("/v2/models/{model}/infer", "400")
        ),
        2.0
    );
    assert_eq!(
        d(
            "torchship_http_requests_total",
            &route("/v2/models/{model}/infer", "404")
        ),
        1.0
    );
    assert_eq!(
        d("torchship_http_requests_total", &route("/predict", "200")),
        1.0
    );
    assert!(
        !after.contains("/v2/models/nope"),
        "raw paths must not become labels"
    );
    // Process metrics for reasoning about CPU-based autoscaling.
    assert!(metric(&after, "torchship_process_resident_memory_bytes", &[]) > 0.0);
    assert!(metric(&after, "torchship_process_open_fds", &[]) > 0.0);
    assert!(after.contains("torchship_process_cpu_seconds_total"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_also_be_served_on_their_own_port() {
    let state = server::start(server::ServerConfig::for_repository(common::models_dir()))
        .await
        .unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let side = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, side_addr) = (main.local_addr().unwrap(), side.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        server::serve::Listeners {
            http: main,
            metrics: Some(side),
            grpc: None,
        },
        state,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = Client::new();
    let text = http
        .get(format!("http://{side_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("torchship_model_ready"));
    // The metrics port serves nothing else.
    let r = http
        .get(format!("http://{side_addr}/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        http.get(format!("http://{main_addr}/v2"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// hyper accepts any token as a method: 1,000 requests with made-up methods must not add a series
/// each to torchship_http_requests_total (they are labelled `other`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metric_series() {
    let server = TestServer::demo().await;
    let http = Client::new();
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("torchship_http_requests_total{"))
            .filter(|l| !l.contains("route=\"/metrics\"")) // the scrapes themselves
            .count()
    };
    let send = |i: usize| {
        let method = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        http.request(method, server.url("/v2/models/digits")).send()
    };
    for i in 0..5 {
        send(i).await.unwrap();
    }
    let after_few = series(&common::scrape(&http, &server.base).await);
    for i in 5..1000 {
        send(i).await.unwrap();
    }
    let text = common::scrape(&http, &server.base).await;
    assert_eq!(series(&text), after_few, "a series per method token");
    assert!(
        text.lines()
            .any(|l| l.starts_with("torchship_http_requests_total{")
                && l.contains("method=\"other\"")
                && l.ends_with(" 1000")),
        "the 1,000 counted as method=\"other\":\n{text}"
    );
}
