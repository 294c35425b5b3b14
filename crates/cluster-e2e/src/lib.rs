//! Helpers for the end-to-end tests against the real local control plane that
//! `scripts/cluster.sh up` starts (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//! kwok nodes, metrics-server), in a network namespace that has only loopback.
//!
//! - [`Env`]: where the cluster is (its state dir and admin kubeconfig) and where the workspace's
//!   built binaries are; [`env`] skips loudly outside the cluster's namespace, and fails in CI.
//! - [`kubectl`]/[`kubectl_json`]: the cluster's own kubectl (the version the cluster runs).
//! - [`run`]: a workspace binary with arguments, its exit code and output; [`Env::loadtest`] the
//!   load tester started with its reports, [`interrupt`] to stop it early.
//! - [`eventually`]: polls real cluster state until a condition holds, with a deadline.
//! - [`lock`]: the tests share nodes (labels, taints), so they take turns.
//!
//! The tests live in `tests/`: one file per behaviour (pinned apply, GPU, scheduling diagnosis,
//! HPA, metrics, RBAC). They are run by `scripts/test.sh`, never by a plain `cargo test`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The cluster and the workspace's binaries.
pub struct Env {
    /// `scripts/cluster.sh`'s state folder (certificates, kubeconfigs, logs).
    pub state: PathBuf,
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    /// `target/<profile>/` of this workspace, where `deployer`, `loadtest` and `server` are.
    pub bin_dir: PathBuf,
    /// The workspace root.
    pub root: PathBuf,
}

/// The cluster these tests run against, or `None` (with a loud message) outside its namespace.
/// In CI (`CI` set) a missing cluster is a failure: these tests may never be skipped there.
pub fn env() -> Option<Env> {
    let Some(state) = std::env::var_os("TORCHSHIP_CLUSTER_DIR").map(PathBuf::from) else {
        let why = "SKIPPED: not inside the local cluster. These tests run through scripts/test.sh, \
                   or by hand: scripts/cluster.sh up && scripts/cluster.sh exec cargo test -p cluster-e2e";
        assert!(
            std::env::var_os("CI").is_none(),
            "{why} (and CI must run them)"
        );
        eprintln!("\n*** cluster-e2e {why} ***\n");
        return None;
    };
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for bin in ["deployer", "loadtest", "server"] {
        assert!(
            bin_dir.join(bin).exists(),
            "{} missing: build it first (cargo build -p deployer -p loadtest -p server)",
            bin_dir.join(bin).display()
        );
    }
    Some(Env {
        kubeconfig: state.join("admin.kubeconfig"),
        state,
        bin_dir,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
    })
}

/// The server image `scripts/image.sh build` made and `import` put into the real node's
/// containerd (`name@sha256:…`), which scripts/test.sh passes as TORCHSHIP_SERVER_IMAGE.
pub fn server_image() -> String {
    std::env::var("TORCHSHIP_SERVER_IMAGE").unwrap_or_else(|_| {
        panic!(
            "TORCHSHIP_SERVER_IMAGE is not set: scripts/test.sh builds and imports the image \
             (scripts/image.sh build && scripts/image.sh import) and sets it to scripts/image.sh ref"
        )
    })
}

/// One test at a time: they label and taint the same nodes.
pub fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a binary printed and how it exited.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(self, code: i32, what: &str) -> Ran {
        assert_eq!(
            self.code, code,
            "{what}: exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Env {
    /// Runs `deployer`, `loadtest` or `server` from this workspace with the admin kubeconfig.
    pub fn run(&self, bin: &str, args: &[&str]) -> Ran {
        self.run_with(bin, args, &[])
    }

    /// As [`Env::run`], with extra environment variables.
    pub fn run_with(&self, bin: &str, args: &[&str], vars: &[(&str, &str)]) -> Ran {
        let out = Command::new(self.bin_dir.join(bin))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(vars.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        Ran::from(out)
    }

    /// `deployer ARGS` with `--namespace NS`, a short poll interval, and a bounded rollout wait.
    pub fn deployer(&self, ns: &str, args: &[&str]) -> Ran {
        let mut all = vec!["--namespace", ns, "--poll-interval", "1s"];
        if !args.contains(&"--timeout") {
            all.extend(["--timeout", "120s"]);
        }
        all.extend(args);
        self.run("deployer", &all)
    }
}

/// Where one load-test run writes its reports.
pub struct Reports {
    pub json: PathBuf,
    pub html: PathBuf,
}

impl Env {
    /// Starts `loadtest ARGS` with its JSON and HTML reports in `dir` (made here), the admin
    /// kubeconfig (for `--watch-hpa`) and its stdout discarded.
    pub fn loadtest(&self, dir: &Path, args: &[&str]) -> (Child, Reports) {
        std::fs::create_dir_all(dir).unwrap();
        let reports = Reports {
            json: dir.join("report.json"),
            html: dir.join("report.html"),
        };
        let child = Command::new(self.bin_dir.join("loadtest"))
            .args(args)
            .arg("--json")
            .arg(&reports.json)
            .arg("--html")
            .arg(&reports.html)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .expect("loadtest");
        (child, reports)
    }
}

/// SIGINT to a child: the load tester stops sending, finishes what is in flight and still writes
/// its reports (kill(1) is procps's, not on every machine).
pub fn interrupt(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is the caller's own child's.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGINT) },
        0,
        "SIGINT to {pid}"
    );
}

/// The cluster's kubectl (on PATH inside `scripts/cluster.sh exec`), admin credentials.
pub fn kubectl(args: &[&str]) -> Ran {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e} (run inside scripts/cluster.sh exec)"));
    Ran::from(out)
}

/// `kubectl ARGS -o json`, parsed; panics if kubectl fails.
pub fn kubectl_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let ran = kubectl(&all).expect_code(0, &format!("kubectl {}", args.join(" ")));
    serde_json::from_str(&ran.stdout).expect("kubectl printed JSON")
}

/// `kubectl ARGS`, which must succeed.
pub fn kubectl_ok(args: &[&str]) -> String {
    kubectl(args)
        .expect_code(0, &format!("kubectl {}", args.join(" ")))
        .stdout
}

/// Polls `check` every 500 ms until it returns `Some`, or panics after `limit` with `what` and the
/// last thing `check` saw (passed to `describe`).
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The pods of a Deployment's selector: (name, node, phase, ready).
pub fn pods(ns: &str, selector: &str) -> Vec<(String, String, String, bool)> {
    let list = kubectl_json(&["get", "pods", "-n", ns, "-l", selector]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
            )
        })
        .collect()
}

/// The taints of a node as `key=value:Effect` strings.
pub fn taints(node: &str) -> Vec<String> {
    let n = kubectl_json(&["get", "node", node]);
    n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}={}:{}",
                t["key"].as_str().unwrap_or_default(),
                t["value"].as_str().unwrap_or_default(),
                t["effect"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The selector of the server's pods.
pub const SERVER_PODS: &str = "app.kubernetes.io/name=torchship-server";

/// What an earlier, interrupted run may have left: the test's namespace (waited for), and the
/// deployer's label and taint on every node. Foreign taints the tests add are removed by each test.
pub fn clean(ns: &str) {
    let _ = kubectl(&[
        "delete",
        "namespace",
        ns,
        "--ignore-not-found",
        "--timeout",
        "90s",
    ]);
    for node in ["kwok-cpu-1", "kwok-cpu-2", "kwok-gpu-1", "real-cpu-1"] {
        let _ = kubectl(&["label", "node", node, "role-"]);
        let _ = kubectl(&["taint", "node", node, "role:NoSchedule-"]);
    }
}
