//! The bench's child processes, each this same program started with a mode word, so that nothing
//! measured shares a process with anything else:
//! - `ceiling MODEL WIDTH BATCH SECONDS`: libtorch alone, the model called in a loop at that
//!   batch size, with the intra-op threads the server's forward thread for it has; prints rows/s.
//! - `serve BATCHING`: the server (this crate's library, as `main.rs` runs it) on 127.0.0.1:0 on
//!   the demo models; prints its port, then serves until killed.
//! - `load URL MODEL CONCURRENCY SECONDS [API]`: the project's load tester (its library, as its CLI
//!   runs it), closed loop, binary tensors (`v2-binary`, or API: `grpc` for the gRPC port);
//!   prints the report's summary as JSON.
//! - `floor URL MODEL SECONDS`: one client, the load tester's own connection code, timing each
//!   exchange: first a trivial endpoint of the same server (`POST /v2/repository/index`, no model
//!   involved: HTTP on loopback and the server's router), then one-row inference of MODEL; prints
//!   both medians in µs.
//! - `baseline`: loads the demo models with libtorch and warms them once; prints its RSS in MiB.
//!
//! A model's platform comes from its config.toml; either way the ceiling calls the server's own
//! `runtime::Module` (the `CModule`, or the package through the AOTInductor bridge), the same call
//! the forward thread makes, without the server around it.

use std::path::PathBuf;

use clap::Parser;
use std::time::Instant;

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

pub fn row(width: usize) -> Vec<f32> {
    (0..width)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect()
}

/// A demo model loaded in-process by the server's own loader (`runtime::Module`: TorchScript or
/// an AOTInductor package, with its load-time checks), without the server around it.
struct Module(server::runtime::Module);

impl Module {
    fn load(name: &str) -> Module {
        let config = config(name);
        let path = models_dir()
            .join(name)
            .join("1")
            .join(config.platform.file_name());
        let module = server::runtime::Module::load(&config, &path, tch::Device::Cpu)
            .expect("the demo models: run scripts/setup.sh");
        Module(module)
    }

    fn forward(&self, x: &tch::Tensor) {
        drop(self.0.forward(vec![x.shallow_clone()]).expect("forward"));
    }
}

fn config(model: &str) -> server::repository::ModelConfig {
    let path = models_dir().join(model).join("config.toml");
    let text = std::fs::read_to_string(&path).expect("the demo model's config.toml");
    server::repository::ModelConfig::parse(&text).expect("config")
}

/// Runs the mode named by `args` (without the program name); `false` if there is none.
pub fn run(args: &[String]) -> bool {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["ceiling", model, width, batch, seconds] => {
            let rows = ceiling(model, parse(width), parse(batch), parse(seconds));
            println!("{rows}");
        }
        ["serve", batching] => serve(*batching == "on"),
        ["load", url, model, concurrency, seconds] => {
            load(url, model, concurrency, seconds, "v2-binary")
        }
        ["load", url, model, concurrency, seconds, api] => {
            load(url, model, concurrency, seconds, api)
        }
        ["floor", url, model, seconds] => floor(url, model, parse(seconds)),
        ["baseline"] => {
            let _g = tch::no_grad_guard();
            let _kept: Vec<Module> = super::MODELS
                .iter()
                .map(|&(name, width, _)| {
                    let m = Module::load(name);
                    m.forward(&tch::Tensor::from_slice(&row(width)).reshape([1, width as i64]));
                    m
                })
                .collect();
            println!("{:.1}", rss_mib(std::process::id()).unwrap_or(0.0));
        }
        _ => return false,
    }
    true
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("bench: bad number {s}"))
}

/// The server's config as `serve` builds it (`BENCH_INTRA_OP` and `BENCH_WORKERS` override the
/// thread counts, for measuring the choice).
fn server_config() -> server::ServerConfig {
    let mut config = server::ServerConfig::for_repository(models_dir());
    config.max_inflight = 4096;
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(n) = env("BENCH_WORKERS") {
        config.worker_threads = n;
    }
    if let Some(n) = env("BENCH_INTRA_OP") {
        config.intra_op_threads = n;
    }
    config
}

/// The intra-op threads the server's forward thread for `model` runs with: the model's own
/// `intra_op_threads`, or the server's.
fn server_threads(model: &str) -> usize {
    match config(model).intra_op_threads {
        0 => server_config().intra_op(),
        n => n,
    }
}

/// libtorch alone: rows/s at `batch` over about `seconds`, with the server's threads for `model`.
fn ceiling(model: &str, width: usize, batch: usize, seconds: f64) -> f64 {
    tch::set_num_threads(server_threads(model) as i32);
    let m = Module::load(model);
    let _g = tch::no_grad_guard();
    let x =
        tch::Tensor::from_slice(&row(width).repeat(batch)).reshape([batch as i64, width as i64]);
    for _ in 0..3 {
        m.forward(&x);
    }
    let (start, mut runs) = (Instant::now(), 0usize);
    while start.elapsed().as_secs_f64() < seconds {
        m.forward(&x);
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

/// As `main.rs` runs it: the runtime with the config's worker count.
fn serve(batching: bool) {
    let mut config = server_config();
    config.overrides.dynamic = Some(batching);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers())
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let state = server::start(config).await.expect("server start");
        state.settled().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        server::serve(
            server::serve::Listeners {
                http: listener,
                metrics: None,
                grpc: None,
            },
            state,
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
}

fn load(url: &str, model: &str, concurrency: &str, seconds: &str, api: &str) {
    let args = loadtest::Args::parse_from([
        "loadtest",
        "--url",
        url,
        "--model",
        model,
        "--concurrency",
        concurrency,
        "--duration",
        &format!("{seconds}s"),
        "--api",
        api,
    ]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let report = rt
        .block_on(loadtest::run(&args, std::future::pending()))
        .expect("load test");
    println!("{}", serde_json::to_string(&report.summary).expect("JSON"));
}

fn floor(url: &str, model: &str, seconds: f64) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let meta: protocol::ModelMetadata = reqwest::get(format!("{url}/v2/models/{model}"))
            .await
            .and_then(|r| r.error_for_status())
            .expect("metadata")
            .json()
            .await
            .expect("metadata JSON");
        let mut rng = loadtest::payload::Rng::new(1);
        let infer =
            loadtest::payload::build(&meta, loadtest::Api::V2Binary, &mut rng).expect("payload");
        let trivial = loadtest::payload::Payload {
            path: "/v2/repository/index".into(),
            body: bytes::Bytes::new(),
            header_length: None,
            content_type: "application/json",
        };
        let mut medians = Vec::new();
        for payload in [&trivial, &infer] {
            let timeout = std::time::Duration::from_secs(5);
            let target =
                loadtest::conn::Target::new(url, &payload.path, false, timeout).expect("target");
            let mut slot = None;
            let mut times = Vec::new();
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < seconds {
                let t = Instant::now();
                let class = target.send(&mut slot, payload).await;
                assert_eq!(class, loadtest::stats::Class::Ok, "{}", payload.path);
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(f64::total_cmp);
            medians.push(times[times.len() / 2]);
        }
        println!("{} {}", medians[0], medians[1]);
    });
}

/// Resident memory of a process, from /proc (Linux).
pub fn rss_mib(pid: u32) -> Option<f64> {
    field_kib(pid, "VmRSS:").map(|k| k / 1024.0)
}

/// Peak resident memory of a process.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    field_kib(pid, "VmHWM:").map(|k| k / 1024.0)
}

fn field_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
