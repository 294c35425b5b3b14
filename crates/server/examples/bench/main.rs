//! Server throughput against libtorch alone, measured side by side in one run, every party in a
//! process of its own.
//!
//! `cargo run --release -p server --example bench` (after scripts/setup.sh). For each model, with
//! dynamic batching on and off, and each concurrency:
//! - the server runs in a child process (`serve`), on the demo models, with libtorch's default
//!   thread count;
//! - the load comes from another child (`load`): the project's load tester, closed loop, one row per
//!   request, binary tensors (tritonclient's format);
//! - the ceiling is libtorch called in a loop from a third child (`ceiling`, same libtorch, same
//!   threads, nothing else in it), just before and just after the point, at the batch the clients
//!   could fill (concurrency, up to the model's max_batch_size) and at the batch the server was
//!   seen to run (mean of `torchship_batch_size` over the point). The ratio uses the average of the
//!   two readings; their spread is printed, because this VM's speed drifts.
//! - then the server's RSS: idle with the demo models loaded, and its peak under the load, against
//!   a child that only loads and warms the same models (`baseline`).
//!
//! The models are TorchScript's mlp and digits and their AOTInductor twins mlp-aoti and
//! digits-aoti (same weights), so one run compares the two platforms, each against its own
//! ceiling.
//!
//! `BENCH_SECONDS` (default 5) sets the length of each point; `BENCH_MODELS=mlp`,
//! `BENCH_CONCURRENCY=1,32` and `BENCH_BATCHING=on` pick points; `BENCH_INTRA_OP`, `BENCH_WORKERS`
//! and `BENCH_SERVER_OMP_WAIT_POLICY` change the server's threads (the ceiling follows the intra-op
//! count) to measure those choices.

mod children;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use children::{peak_rss_mib, rss_mib};

/// Name, input width, max_batch_size: each TorchScript model and its AOTInductor twin.
const MODELS: [(&str, usize, usize); 4] = [
    ("mlp", 1024, 128),
    ("mlp-aoti", 1024, 128),
    ("digits", 64, 64),
    ("digits-aoti", 64, 64),
];
const CONCURRENCY: [usize; 4] = [1, 8, 32, 64];

fn exe() -> std::path::PathBuf {
    std::env::current_exe().expect("own path")
}

/// Runs a child mode to its end and returns its stdout's last line.
fn child(args: &[String]) -> String {
    let out = Command::new(exe())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("child");
    assert!(out.status.success(), "bench child {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn ceiling(model: &str, width: usize, batch: usize, seconds: f64) -> f64 {
    let args = [
        "ceiling",
        model,
        &width.to_string(),
        &batch.to_string(),
        &seconds.to_string(),
    ];
    child(&args.map(String::from)).parse().expect("rows/s")
}

/// Two readings of the ceiling: their mean and their spread (max/min - 1).
fn mean_spread(a: f64, b: f64) -> (f64, f64) {
    ((a + b) / 2.0, a.max(b) / a.min(b).max(1e-9) - 1.0)
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(batching: bool) -> Server {
        let mode = if batching { "on" } else { "off" };
        let mut command = Command::new(exe());
        // OpenMP's wait policy as the server binary sets it (server::omp: passive unless
        // OMP_WAIT_POLICY is set); BENCH_SERVER_OMP_WAIT_POLICY sets it for the server only, to
        // measure the choice. The ceiling keeps libtorch's default, spinning, its fastest in a loop.
        let inherited = std::env::var_os(server::omp::VAR);
        let policy = std::env::var("BENCH_SERVER_OMP_WAIT_POLICY")
            .ok()
            .or_else(|| {
                server::omp::needs_restart(inherited.as_deref())
                    .then(|| server::omp::SERVER_POLICY.to_string())
            });
        if let Some(policy) = policy {
            command.env(server::omp::VAR, policy);
        }
        let mut child = command
            .args(["serve", mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("server child");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("port");
        let port: u16 = line
            .trim()
            .parse()
            .expect("the server child prints its port");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            reqwest::get(&url)
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill(); // our own child, by its handle
        let _ = self.child.wait();
    }
}

fn sample(text: &str, name: &str, model: &str, extra: Option<(&str, &str)>) -> f64 {
    let mut want = vec![("model", model), ("version", "1")];
    want.extend(extra);
    protocol::exposition::exact(text, name, &want).unwrap_or(0.0)
}

/// What `/metrics` says about the point: mean batch, server-side means (ms) of request, queue and
/// forward time, and the batch-size histogram.
fn server_view(before: &str, after: &str, model: &str) -> (f64, [f64; 3], String) {
    let d =
        |name: &str, extra| sample(after, name, model, extra) - sample(before, name, model, extra);
    let mean_batch =
        d("torchship_batch_size_sum", None) / d("torchship_batch_size_count", None).max(1.0);
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
    let ms = [
        mean("torchship_request_duration_seconds", None),
        mean("torchship_queue_duration_seconds", None),
        mean(
            "torchship_compute_duration_seconds",
            Some(("phase", "forward")),
        ),
    ];
    (mean_batch, ms, histogram)
}

fn pick(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect())
}

fn point(
    server: &Server,
    (name, width, max_batch): (&str, usize, usize),
    batching: bool,
    c: usize,
    seconds: f64,
) {
    let fill = if batching { c.min(max_batch) } else { 1 };
    let quick = (seconds / 2.0).max(1.0);
    let before = ceiling(name, width, fill, quick);
    let scrape = server.metrics();
    let args = [
        "load",
        &server.base,
        name,
        &c.to_string(),
        &seconds.to_string(),
    ]
    .map(String::from);
    let summary: serde_json::Value = serde_json::from_str(&child(&args)).expect("summary JSON");
    let (mean_batch, [req, queue, fwd], histogram) = server_view(&scrape, &server.metrics(), name);
    let after = ceiling(name, width, fill, quick);
    let (full, spread) = mean_spread(before, after);
    let seen = mean_batch.round().max(1.0) as usize;
    let at_seen = if seen == fill {
        full
    } else {
        ceiling(name, width, seen, quick)
    };
    let rps = summary["achieved_rps"].as_f64().unwrap_or(0.0);
    let lat = &summary["latency_ms"]["uncorrected"];
    let (p50, p99) = (
        lat["p50"].as_f64().unwrap_or(0.0),
        lat["p99"].as_f64().unwrap_or(0.0),
    );
    let errors = summary["requests"].as_u64().unwrap_or(0) - summary["ok"].as_u64().unwrap_or(0);
    println!(
        "| {name} | {} | {c} | {rps:.0} | {p50:.2} | {p99:.2} | {errors} | {mean_batch:.1} | {full:.0} (batch {fill}, ±{:.0}%) | {:.2} | {at_seen:.0} (batch {seen}) | {:.2} | {req:.2} / {queue:.2} / {fwd:.2} |{histogram} |",
        if batching { "on" } else { "off" },
        100.0 * spread,
        rps / full,
        rps / at_seen,
    );
}

/// One client: the HTTP floor (a trivial endpoint), digits inference, and libtorch alone at batch 1.
fn floor_line(seconds: f64) {
    let server = Server::start(true);
    let args = ["floor", &server.base, "digits", &seconds.to_string()].map(String::from);
    let line = child(&args);
    let medians: Vec<f64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
    let forward_us = 1e6 / ceiling("digits", 64, 1, (seconds / 2.0).max(1.0));
    let (floor, infer) = (medians[0], medians[1]);
    println!(
        "\none client, medians: trivial endpoint (HTTP floor) {floor:.0} µs; digits inference {infer:.0} µs; libtorch alone, one digits pass {forward_us:.0} µs; the server adds {:.0} µs over the floor and the pass",
        infer - floor - forward_us
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if children::run(&args) {
        return;
    }
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let models: Vec<_> = MODELS
        .into_iter()
        .filter(|m| pick("BENCH_MODELS").is_none_or(|l| l.iter().any(|x| x == m.0)))
        .collect();
    let concurrency: Vec<usize> = CONCURRENCY
        .into_iter()
        .filter(|c| pick("BENCH_CONCURRENCY").is_none_or(|l| l.contains(&c.to_string())))
        .collect();
    let batching: Vec<bool> = [true, false]
        .into_iter()
        .filter(|b| {
            pick("BENCH_BATCHING")
                .is_none_or(|l| l.contains(&(if *b { "on" } else { "off" }).to_string()))
        })
        .collect();
    println!("torchship bench: {seconds} s per point; server, load tester and libtorch ceiling each in a process of its own; {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("\n| model | batching | clients | req/s | p50 ms | p99 ms | errors | mean batch | libtorch alone at the batch the clients fill (rows/s, spread) | ratio | libtorch alone at the batch seen | ratio | server ms: request / queue / forward | batch sizes (passes) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut memory = None;
    for &b in &batching {
        let server = Server::start(b);
        std::thread::sleep(Duration::from_millis(500)); // let start-up allocations settle
        let idle = rss_mib(server.child.id()).unwrap_or(0.0);
        for &m in &models {
            for &c in &concurrency {
                point(&server, m, b, c, seconds);
            }
        }
        let peak = peak_rss_mib(server.child.id()).unwrap_or(0.0);
        memory.get_or_insert((idle, peak));
    }
    if batching.contains(&true) && models.iter().any(|m| m.0 == "digits") {
        floor_line(seconds);
    }
    let baseline: f64 = child(&["baseline".to_string()]).parse().unwrap_or(0.0);
    if let Some((idle, peak)) = memory {
        println!("\nmemory (MiB): libtorch with the four models loaded and warmed {baseline:.1}; server idle {idle:.1} ({:.2}x); server peak under the load above {peak:.1}", idle / baseline.max(1e-9));
    }
}
