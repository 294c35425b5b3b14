//! Test support: the real server in-process on 127.0.0.1:0, and the demo models made by setup.

#![allow(dead_code)]

use std::path::PathBuf;

use server::{AppState, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The repository made by `scripts/setup.sh`.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    assert!(
        dir.join("digits/1/model.pt").exists(),
        "demo models missing: run scripts/setup.sh (the README's test command does)"
    );
    dir
}

pub struct TestServer {
    pub base: String,
    /// `127.0.0.1:PORT` of the gRPC service.
    pub grpc: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::StartupError>>,
}

impl TestServer {
    /// Starts the server on `config` and waits until every model has finished loading.
    pub async fn start(config: ServerConfig) -> TestServer {
        let addr = config.addr;
        let state = server::start(config).await.expect("models start");
        state.settled().await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = server::serve::Listeners {
            http: listener,
            metrics: None,
            grpc: Some(grpc),
        };
        let task = tokio::spawn(server::serve(listeners, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            grpc: grpc_addr,
            state,
            stop: Some(stop),
            task,
        }
    }

    pub async fn demo() -> TestServer {
        TestServer::start(ServerConfig::for_repository(models_dir())).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// The held-out digits split written by scripts/export_models.py.
#[derive(serde::Deserialize)]
pub struct Heldout {
    pub accuracy: f64,
    pub labels: Vec<usize>,
    pub inputs: Vec<Vec<f32>>,
}

pub fn heldout() -> Heldout {
    let text = std::fs::read_to_string(models_dir().join("digits/heldout.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs `rows` through the model in-process with libtorch, as the reference.
pub fn in_process(model: &str, rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    Reference::load(model).run(rows)
}

/// POSTs `body` as JSON and decodes the JSON answer (panics on any failure: tests only).
pub async fn post_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    body: &(impl serde::Serialize + ?Sized),
) -> T {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GETs `url` and decodes the JSON answer (panics on any failure: tests only).
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
) -> T {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The server's `/metrics` text.
pub async fn scrape(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// Element-wise `|got - want| <= tol * max(1, |want|)`: absolute near zero, relative for large logits
/// (libtorch's kernels may round differently for different batch sizes).
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: server {g} vs in-process {w}"
        );
    }
}

/// The project venv's Python (made by scripts/setup.sh), with torch and tritonclient.
pub fn venv_python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup.sh",
        py.display()
    );
    py
}

/// A fresh copy of the test-only repository (tests/fixtures/make_models.py), one per test process,
/// made once and copied per call so tests can add or break models without affecting each other.
pub fn fixture_repo(tag: &str) -> PathBuf {
    static MADE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let master = MADE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("torchship-fixtures-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_models.py");
        let status = std::process::Command::new(venv_python())
            .arg(script)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "make_models.py failed");
        dir
    });
    let copy = master.with_file_name(format!("torchship-fixtures-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(master, &copy);
    copy
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Only these models of the fixture repository (removes the others from the copy).
pub fn fixture_with(tag: &str, keep: &[&str]) -> PathBuf {
    let dir = fixture_repo(tag);
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if !keep.contains(&e.file_name().to_str().unwrap()) {
            std::fs::remove_dir_all(e.path()).unwrap();
        }
    }
    dir
}

/// Reads one sample's value from Prometheus text (exact label set, any label order). A missing
/// series is a failure, not 0: an assert that it is 0 must be able to fail.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| {
        let same_name: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        panic!("no series {name}{labels:?} in /metrics; of that name there are: {same_name:#?}")
    })
}

/// As [`metric`], where no series yet means 0: a counter's series appears with its first
/// increment, so a scrape taken before any request has none.
pub fn metric_or_zero(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or(0.0)
}

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    protocol::exposition::exact(text, name, labels)
}

/// The real `server` binary, started as `cargo run -p server` would (no LD_LIBRARY_PATH), on port 0.
pub struct Process {
    pub child: std::process::Child,
    pub base: String,
    /// `127.0.0.1:PORT` of its gRPC service.
    pub grpc: Option<String>,
    log: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Process {
    pub fn spawn(args: &[&str]) -> Process {
        Process::spawn_with_env(args, &[])
    }

    /// As [`Process::spawn`], with these environment variables added (OMP_WAIT_POLICY is unset
    /// unless given here, as on a machine that never heard of it).
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Process {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args([
                "--port",
                "0",
                "--grpc-port",
                "0",
                "--log-format",
                "json",
                "--device",
                "cpu",
            ])
            .args(args)
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("OMP_WAIT_POLICY")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,torchship::access=off")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (addr, grpc) = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if v["fields"]["message"] == "torchship server listening" {
                let grpc = v["fields"]["grpc_addr"].as_str().map(str::to_string);
                break (v["fields"]["addr"].as_str().unwrap().to_string(), grpc);
            }
        };
        // Keep reading so the child never blocks on a full pipe; the lines are there for asserts.
        let log = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Process {
            child,
            base: format!("http://{addr}"),
            grpc,
            log: Some(log),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls readiness (as a kubelet does) until 200, bounded.
    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(self.url("/v2/health/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM or SIGINT to the server by its pid (libc, not `kill(1)`: procps is not on
    /// every machine).
    pub fn signal(&self, sig: &str) {
        let signo = match sig {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            other => panic!("signal {other}: only TERM and INT are used"),
        };
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
        let rc = unsafe { libc::kill(pid, signo) };
        assert_eq!(
            rc,
            0,
            "kill -{sig} {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Resident set size of the server process, in bytes (Linux).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Waits for the exit (bounded) and returns its status and the log lines.
    pub fn wait(mut self, limit: std::time::Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log.take().unwrap().join().unwrap();
                return (status, log);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In-process libtorch with the module loaded once.
pub struct Reference(tch::CModule);

impl Reference {
    pub fn load(model: &str) -> Reference {
        let mut m = tch::CModule::load(models_dir().join(model).join("1/model.pt")).unwrap();
        m.set_eval();
        Reference(m)
    }

    /// Runs `rows` as one batch.
    pub fn run(&self, rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let _g = tch::no_grad_guard();
        let width = rows[0].len() as i64;
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = tch::Tensor::from_slice(&flat).reshape([rows.len() as i64, width]);
        let y = self.0.forward_ts(&[x]).unwrap();
        let cols = y.size()[1] as usize;
        let out: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        out.chunks(cols).map(|c| c.to_vec()).collect()
    }
}

/// Deterministic pseudo-random rows in [-1, 1).
pub fn rows(n: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            (0..width)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}
