//! Server throughput against in-process libtorch, measured side by side in one run.
//!
//! `cargo run --release -p server --example bench` (after scripts/setup.sh). Prints:
//! 1. in-process libtorch rows/s for `mlp` and `digits` at batch 1, 8, 32 (the ceiling);
//! 2. the server (this crate, in this process, on 127.0.0.1:0) under closed-loop single-row HTTP
//!    clients at concurrency 1, 8, 32, 64, with dynamic batching on and off: requests/s, p50/p99;
//! 3. for each server point, the mean batch size observed in /metrics, in-process libtorch at that
//!    batch size measured right then (twice, around the point, averaged), the ratio, the server-side
//!    time breakdown, and the batch-size histogram.
//!
//! Clients send raw binary rows (`Inference-Header-Content-Length: 0`), as tritonclient's binary
//! mode does, so the numbers are about serving, not JSON. Load generator, server and libtorch share
//! the machine's cores, which the in-process ceiling does not: the ratios include that cost.
//! `BENCH_SECONDS` (default 5) sets the length of each point.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::wire;
use server::ServerConfig;

const CONCURRENCY: [usize; 4] = [1, 8, 32, 64];
const BATCHES: [usize; 3] = [1, 8, 32];

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn row(width: usize) -> Vec<f32> {
    (0..width)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect()
}

/// In-process libtorch rows/s at `batch`, over about `seconds`.
fn in_process(model: &tch::CModule, width: usize, batch: usize, seconds: f64) -> f64 {
    let _g = tch::no_grad_guard();
    let x =
        tch::Tensor::from_slice(&row(width).repeat(batch)).reshape([batch as i64, width as i64]);
    for _ in 0..3 {
        let _ = model.forward_ts(&[&x]).unwrap();
    }
    let (start, mut runs) = (Instant::now(), 0usize);
    while start.elapsed().as_secs_f64() < seconds {
        let _ = model.forward_ts(&[&x]).unwrap();
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

fn load(name: &str) -> tch::CModule {
    let mut m = tch::CModule::load(models_dir().join(name).join("1/model.pt"))
        .expect("run scripts/setup.sh");
    m.set_eval();
    m
}

fn sample(text: &str, name: &str, model: &str, extra: Option<(&str, &str)>) -> f64 {
    let mut want = vec![("model", model), ("version", "1")];
    want.extend(extra);
    protocol::exposition::exact(text, name, &want).unwrap_or(0.0)
}

struct Point {
    /// Server-side means in ms: request (body read to response built), queue wait, forward.
    server_ms: [f64; 3],
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_batch: f64,
    histogram: String,
}

/// Closed loop: `concurrency` clients each sending one row at a time for `seconds`.
async fn drive(base: &str, model: &str, width: usize, concurrency: usize, seconds: f64) -> Point {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let metrics = || async {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let body: Vec<u8> = row(width).iter().flat_map(|x| x.to_le_bytes()).collect();
    let url = format!("{base}/v2/models/{model}/infer");
    let stop = Arc::new(AtomicBool::new(false));
    // Warm the connections and the batcher, then measure.
    for _ in 0..concurrency.min(8) {
        let _ = http
            .post(&url)
            .header(wire::HEADER_LENGTH, "0")
            .body(body.clone())
            .send()
            .await;
    }
    let before = metrics().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, body, stop) = (http.clone(), url.clone(), body.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header(wire::HEADER_LENGTH, "0")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = metrics().await;
    all.sort_unstable();
    let pct = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)].as_secs_f64() * 1e3;
    let d = |name: &str, extra| {
        sample(&after, name, model, extra) - sample(&before, name, model, extra)
    };
    let (count, sum) = (
        d("torchship_batch_size_count", None),
        d("torchship_batch_size_sum", None),
    );
    let mut histogram = String::new();
    let mut below = 0.0;
    for le in ["1", "2", "4", "8", "16", "32", "64", "128"] {
        let cumulative = d("torchship_batch_size_bucket", Some(("le", le)));
        if cumulative - below > 0.0 {
            histogram.push_str(&format!(" <={le}:{}", cumulative - below));
        }
        below = cumulative;
    }
    let mean = |name: &str, extra| {
        1e3 * d(&format!("{name}_sum"), extra) / d(&format!("{name}_count"), extra).max(1.0)
    };
    let server_ms = [
        mean("torchship_request_duration_seconds", None),
        mean("torchship_queue_duration_seconds", None),
        mean(
            "torchship_compute_duration_seconds",
            Some(("phase", "forward")),
        ),
    ];
    Point {
        server_ms,
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(50),
        p99_ms: pct(99),
        mean_batch: sum / count.max(1.0),
        histogram,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    // BENCH_MODELS=mlp and BENCH_CONCURRENCY=1,32 narrow the run (for profiling one point).
    let pick = |var: &str| {
        std::env::var(var)
            .ok()
            .map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
    };
    let models: Vec<(&str, usize)> = [("mlp", 1024usize), ("digits", 64usize)]
        .into_iter()
        .filter(|(n, _)| pick("BENCH_MODELS").is_none_or(|m| m.iter().any(|x| x == n)))
        .collect();
    let concurrency: Vec<usize> = CONCURRENCY
        .into_iter()
        .filter(|c| pick("BENCH_CONCURRENCY").is_none_or(|l| l.iter().any(|x| *x == c.to_string())))
        .collect();
    println!(
        "torchship bench: {seconds} s per point, libtorch threads {}, CUDA {}",
        tch::get_num_threads(),
        tch::Cuda::is_available()
    );
    println!("\n## in-process libtorch (rows/s)\n");
    println!("| model | batch 1 | batch 8 | batch 32 |\n|---|---|---|---|");
    let modules: Vec<(&str, usize, tch::CModule)> =
        models.iter().map(|&(n, w)| (n, w, load(n))).collect();
    for (name, width, m) in &modules {
        let r: Vec<String> = BATCHES
            .iter()
            .map(|&b| format!("{:.0}", in_process(m, *width, b, seconds / 2.0)))
            .collect();
        println!("| {name} | {} |", r.join(" | "));
    }
    println!("\n## server, single-row clients (closed loop)\n");
    println!("| model | batching | concurrency | req/s | p50 ms | p99 ms | mean batch | in-process rows/s at that batch | server / in-process | server ms: request / queue / forward | batch sizes (passes) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for batching in [true, false] {
        let mut config = ServerConfig::for_repository(models_dir());
        config.overrides.dynamic = Some(batching);
        config.max_inflight = 4096;
        let state = server::start(config).await?;
        state.settled().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, None, state, async move {
            let _ = stopped.await;
        }));
        for (name, width, module) in &modules {
            for &c in &concurrency {
                // The machine's speed drifts: the ceiling is measured just before and just after the
                // server point (at the batch size the server then turned out to use) and averaged.
                let guess = if batching { (c as f64).min(32.0) } else { 1.0 };
                let before = in_process(module, *width, guess as usize, seconds / 4.0);
                let p = drive(&base, name, *width, c, seconds).await;
                let at = p.mean_batch.round().max(1.0) as usize;
                let after = in_process(module, *width, at, seconds / 4.0);
                let ceiling = if at == guess as usize {
                    (before + after) / 2.0
                } else {
                    (in_process(module, *width, at, seconds / 4.0) + after) / 2.0
                };
                let [req, queue, fwd] = p.server_ms;
                println!(
                    "| {name} | {} | {c} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} (batch {at}) | {:.0}% | {req:.2} / {queue:.2} / {fwd:.2} |{} |",
                    if batching { "on" } else { "off" },
                    p.rps, p.p50_ms, p.p99_ms, p.mean_batch, ceiling, 100.0 * p.rps / ceiling, p.histogram
                );
            }
        }
        let _ = stop.send(());
        task.await??;
    }
    Ok(())
}
