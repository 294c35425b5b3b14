//! The load tester's maximum rate against `wrk`'s, on the same trivial endpoint with the same
//! number of connections, side by side in one run.
//!
//! `cargo run --release -p loadtest --example vs_wrk` (needs `wrk`: `apt-get install wrk`).
//! The endpoint is a v2 model `m` whose infer answers a constant at once, served by a child
//! process (this example re-run with `serve`), so the server's cost is the same for both tools.
//! Both send the same POST body (the load tester's generated v2 JSON; wrk gets it via a Lua
//! script) over HTTP/1.1 keep-alive. Each tool runs twice, alternating; the best run of each
//! counts. `VS_WRK_SECONDS` (default 10) and `VS_WRK_CONNECTIONS` (default 64) set the runs.
//!
//! Everything shares this machine's cores: the ratio is what matters, not the absolute rates.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The trivial endpoint, in this process (the child).
async fn serve() {
    let app = Router::new()
        .route(
            "/v2/models/m",
            get(|| async {
                axum::Json(
                    json!({"name": "m", "versions": ["1"], "platform": "pytorch_torchscript",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}),
                )
            }),
        )
        .route(
            "/v2/models/m/infer",
            post(|_body: axum::body::Bytes| async {
                axum::Json(
                    json!({"model_name": "m", "outputs": [{"name": "y", "shape": [1, 4],
                    "datatype": "FP32", "data": [0, 0, 0, 0]}]}),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    axum::serve(listener, app).await.unwrap();
}

fn wrk(url: &str, script: &std::path::Path, connections: u64, seconds: u64) -> f64 {
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "-s", script.to_str().unwrap()])
        .arg(format!("{url}/v2/models/m/infer"))
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk reported errors:\n{text}");
    }
    rate
}

async fn ours(url: &str, connections: u64, seconds: u64) -> f64 {
    let args = loadtest::Args::parse_from([
        "loadtest",
        "--url",
        url,
        "--model",
        "m",
        "--concurrency",
        &connections.to_string(),
        "--duration",
        &format!("{seconds}s"),
    ]);
    let report = loadtest::run(&args, std::future::pending())
        .await
        .expect("load test");
    assert_eq!(report.summary.error_rate, 0.0, "{}", report.text());
    report.summary.achieved_rps
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return serve().await;
    }
    let (seconds, connections) = (
        env_or("VS_WRK_SECONDS", 10),
        env_or("VS_WRK_CONNECTIONS", 64),
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut addr = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut addr)
        .unwrap();
    let url = format!("http://{}", addr.trim());

    // wrk sends exactly the body the load tester generates.
    let meta: protocol::ModelMetadata = reqwest::get(format!("{url}/v2/models/m"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payload = loadtest::payload::build(
        &meta,
        loadtest::Api::V2,
        &mut loadtest::payload::Rng::new(1),
    )
    .unwrap();
    let script = std::env::temp_dir().join(format!("vs_wrk-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"{}\"\nwrk.body = [[{}]]\n",
            payload.content_type,
            String::from_utf8_lossy(&payload.body)
        ),
    )
    .unwrap();

    println!("trivial v2 endpoint at {url}, {connections} connections, {seconds} s per run, HTTP/1.1 keep-alive");
    let (mut best_wrk, mut best_ours) = (0.0f64, 0.0f64);
    for round in 1..=2 {
        let w = wrk(&url, &script, connections, seconds);
        let o = ours(&url, connections, seconds).await;
        println!(
            "round {round}: wrk {w:>9.0} req/s   loadtest {o:>9.0} req/s   ratio {:.2}",
            o / w
        );
        best_wrk = best_wrk.max(w);
        best_ours = best_ours.max(o);
    }
    println!(
        "best: wrk {best_wrk:.0} req/s, loadtest {best_ours:.0} req/s: loadtest/wrk = {:.2} (target >= 0.80)",
        best_ours / best_wrk
    );
    let _ = std::fs::remove_file(&script);
    let _ = child.kill();
    let _ = child.wait();
}
