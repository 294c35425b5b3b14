//! The load tester against a real HTTP server on loopback (a small v2 endpoint written here, so the
//! numbers measure the load tester, not a model).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{args, server, server_with_peers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_at_500_per_second_for_10_seconds_is_accurate() {
    let (url, count) = server(None, Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("r.json");
    let a = args(
        &url,
        &[
            "--rate",
            "500",
            "--duration",
            "10s",
            "--json",
            json_path.to_str().unwrap(),
        ],
    );
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    let s = &report.summary;
    println!("{}", report.text());
    assert_eq!(s.requests, 5000, "request count must be exact");
    assert_eq!(
        count.load(Ordering::SeqCst),
        5000,
        "the server saw exactly as many"
    );
    assert_eq!(s.ok, 5000);
    let err = (s.achieved_rps - 500.0).abs() / 500.0;
    assert!(
        err < 0.02,
        "achieved {} req/s, {:.2}% off",
        s.achieved_rps,
        err * 100.0
    );
    // The per-second series: ten full seconds of 500 offered.
    assert!(report.series.len() >= 10);
    assert!(
        report.series[..10].iter().all(|r| r.offered == 500),
        "{:?}",
        report.series
    );
    // The JSON report as the CLI writes it (the same call), with the documented key.
    report.write_files(&a).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert!((v["summary"]["achieved_rps"].as_f64().unwrap() - 500.0).abs() < 10.0);
    assert!(report
        .check(&args(
            &url,
            &["--rate", "500", "--min-rps", "490", "--max-error-rate", "0"]
        ))
        .is_empty());
    assert_eq!(
        report
            .check(&args(&url, &["--rate", "500", "--min-rps", "1000"]))
            .len(),
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_do_not_decode_are_errors() {
    // A server answering 200 with outputs its own metadata does not list.
    let app = axum::Router::new()
        .route(
            "/v2/models/m",
            axum::routing::get(|| async {
                axum::Json(
                    serde_json::json!({"name": "m", "versions": ["1"], "platform": "p",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}),
                )
            }),
        )
        .route(
            "/v2/models/m/infer",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({"model_name": "m", "outputs": [
                    {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [0, 0]}]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let a = args(&url, &["--concurrency", "2", "--requests", "50"]);
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    let s = &report.summary;
    // The first answer on each of the two connections is decoded, and fails.
    assert_eq!(s.requests, 50);
    assert_eq!(s.errors.get("undecodable"), Some(&2), "{:?}", s.errors);
    assert_eq!(s.ok, 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_stall_shows_in_corrected_latency_only() {
    // One connection: while the stalled request holds it, the next ones cannot be sent on time —
    // the classic coordinated omission. Their latency must count from when they should have left.
    let (url, _) = server(Some(100), Duration::from_secs(1)).await;
    let a = args(
        &url,
        &["--rate", "100", "--duration", "5s", "--connections", "1"],
    );
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    let s = &report.summary;
    println!("{}", report.text());
    assert_eq!(s.requests, 500);
    let (c, u) = (&s.latency_ms.corrected, &s.latency_ms.uncorrected);
    assert!(
        c.p99 >= 500.0,
        "corrected p99 {} ms should reflect the 1 s stall",
        c.p99
    );
    assert!(
        u.p99 < 100.0,
        "uncorrected p99 {} ms should not (only one request saw it)",
        u.p99
    );
    assert!(
        c.max >= 1000.0 && u.max >= 1000.0,
        "the stalled request itself took 1 s: {c:?} {u:?}"
    );
    assert!(
        s.late >= 90,
        "about 100 requests were sent late, counted {}",
        s.late
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_bounded_by_request_count() {
    let (url, count) = server(None, Duration::ZERO).await;
    let a = args(
        &url,
        &[
            "--concurrency",
            "8",
            "--requests",
            "800",
            "--duration",
            "60s",
            "--api",
            "v2-binary",
        ],
    );
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    assert_eq!(report.summary.requests, 800);
    assert_eq!(count.load(Ordering::SeqCst), 800);
    assert_eq!(report.summary.late, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_ramp_the_offered_rate() {
    let (url, count) = server(None, Duration::ZERO).await;
    // 0 -> 200 req/s over 2 s (200 requests: 50 in the first second, 150 in the second), then
    // 2 s at 200 req/s.
    let a = args(&url, &["--stages", "2s:200,2s:200"]);
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    println!("{}", report.text());
    assert_eq!(report.summary.requests, 600);
    assert_eq!(count.load(Ordering::SeqCst), 600);
    let offered: Vec<u64> = report.series.iter().take(4).map(|r| r.offered).collect();
    let want = [50, 150, 200, 200];
    for (got, want) in offered.iter().zip(want) {
        assert!(
            got.abs_diff(want) <= 1,
            "offered per second {offered:?}, want {want:?}"
        );
    }
    assert!(
        report.summary.mode.contains("stages 2s:200,2s:200"),
        "{}",
        report.summary.mode
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_metrics_reports_the_servers_view() {
    let (url, _) = server(None, Duration::ZERO).await;
    let a = args(
        &url,
        &["--rate", "100", "--duration", "4s", "--scrape-metrics"],
    );
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    let m = report.server_metrics.as_ref().unwrap();
    println!("{}\n{m:?}", report.text());
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert!(m.points.len() >= 2, "{m:?}");
    for p in &m.points {
        assert!(
            p.executions_per_s > 0.0,
            "the load ran through every scrape: {m:?}"
        );
        assert_eq!(p.mean_batch, 1.0, "one row per pass: {m:?}");
        // 100 req/s, measured over about a second.
        assert!((50.0..200.0).contains(&p.executions_per_s), "{m:?}");
    }
    assert!(report.text().contains("mean batch 1.0"));
    assert!(loadtest::html::render(&report)
        .unwrap()
        .contains("Server (/metrics): pending requests"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lifetime_replaces_old_connections() {
    // Without a lifetime, the two clients keep the two connections opened before the load.
    let (url, _, peers) = server_with_peers(None, Duration::ZERO).await;
    let a = args(&url, &["--concurrency", "2", "--duration", "1500ms"]);
    loadtest::run(&a, std::future::pending()).await.unwrap();
    assert_eq!(peers.lock().unwrap().len(), 2);
    // With one, each slot reconnects every 300 ms: about 5 connections each over 1.5 s.
    let (url, _, peers) = server_with_peers(None, Duration::ZERO).await;
    let a = args(
        &url,
        &[
            "--concurrency",
            "2",
            "--duration",
            "1500ms",
            "--connection-lifetime",
            "300ms",
        ],
    );
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    assert_eq!(report.summary.error_rate, 0.0);
    let n = peers.lock().unwrap().len();
    assert!((4..=20).contains(&n), "{n} connections");
}
