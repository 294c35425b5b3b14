//! libtorch's threads in the real binary: OpenMP's wait policy (set by the binary starting itself
//! again, so read from the process's own environment), and the intra-op thread count that each
//! forward thread runs with (read from the threads the process has: OpenMP names its helpers after
//! the thread that started them).

mod common;

use common::Process;
use serde_json::{json, Value};

fn environment(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

async fn infer(server: &Process, model: &str, input: &str, rows: usize, width: usize) {
    let body = json!({"inputs": [{"name": input, "shape": [rows, width], "datatype": "FP32",
        "data": vec![0.5f32; rows * width]}]});
    let http = reqwest::Client::new();
    let url = server.url(&format!("/v2/models/{model}/infer"));
    let v: Value = common::post_json(&http, url, &body).await;
    assert_eq!(v["outputs"][0]["shape"][0], json!(rows), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmp_threads_sleep_between_passes_unless_the_operator_chose_otherwise() {
    let repo = common::models_dir();
    let args = ["--model-repository", repo.to_str().unwrap()];
    for (given, expected) in [(None, "PASSIVE"), (Some("ACTIVE"), "ACTIVE")] {
        let env: Vec<(&str, &str)> = given.map(|v| ("OMP_WAIT_POLICY", v)).into_iter().collect();
        let server = Process::spawn_with_env(&args, &env);
        server.wait_ready().await;
        // The pid is the one spawned: the binary replaced itself, it did not fork a child.
        let env = environment(server.pid());
        let want = format!("OMP_WAIT_POLICY={expected}");
        assert!(env.contains(&want), "given {given:?}: {env:?}");
        assert_eq!(
            env.iter()
                .filter(|v| v.starts_with("OMP_WAIT_POLICY="))
                .count(),
            1
        );
        server.signal("TERM");
        let (status, _) = server.wait(std::time::Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_forward_thread_runs_with_its_intra_op_thread_count() {
    let repo = common::models_dir();
    // digits' config.toml sets intra_op_threads = 1; mlp follows the flag.
    for flag in [1, 2] {
        let flag_text = flag.to_string();
        let server = Process::spawn(&[
            "--model-repository",
            repo.to_str().unwrap(),
            "--intra-op-threads",
            &flag_text,
            "--shutdown-delay",
            "0s",
        ]);
        server.wait_ready().await;
        // mlp at its largest batch: MKL picks its thread count per call (MKL_DYNAMIC), and after
        // 8-row passes CI once found one thread where 2 were allowed (a loaded 2-core AMD machine;
        // not reproduced by hand). 128 rows of 1024 is a GEMM it has every reason to split.
        infer(&server, "mlp", "input", 128, 1024).await;
        infer(&server, "digits", "pixels", 8, 64).await;
        // A forward thread and its OpenMP helpers share its name: `flag` threads in all.
        assert_eq!(
            threads_named(server.pid(), "fwd-mlp-1-0"),
            flag,
            "mlp at --intra-op-threads {flag}"
        );
        assert_eq!(
            threads_named(server.pid(), "fwd-digits-1-0"),
            1,
            "digits at --intra-op-threads {flag}"
        );
        server.signal("TERM");
        let (status, _) = server.wait(std::time::Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
    }
}
