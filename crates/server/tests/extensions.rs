//! Every method of tritonclient's HTTP and gRPC clients against the real binary started with a
//! control key (tests/fixtures/triton_extensions.py): classification, statistics (checked against
//! /metrics), log settings, the repository calls, and the deliberate 501 / UNIMPLEMENTED answers
//! for trace settings and shared memory. Then the log itself shows that a log-level change took
//! effect: the change to `log_info: false` is not logged (its own message is info), the change back is.

mod common;

use common::{models_dir, venv_python, Process};

const KEY: &str = "extensions-test-control-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tritonclient_method_works_or_fails_on_purpose() {
    let repo = models_dir();
    let server = Process::spawn_with_env(
        &["--model-repository", repo.to_str().unwrap()],
        &[("TORCHSHIP_CONTROL_KEY", KEY)],
    );
    server.wait_ready().await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/triton_extensions.py");
    let out = tokio::process::Command::new(venv_python())
        .arg(script)
        .arg(server.base.trim_start_matches("http://"))
        .arg(server.grpc.as_deref().expect("the gRPC address"))
        .arg(&repo)
        .arg(KEY)
        .arg(protocol::wire::HEADER_LENGTH)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "triton_extensions.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    println!("{stdout}");

    server.signal("TERM");
    let (status, log) = server.wait(std::time::Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    let changes: Vec<String> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "log settings changed")
        .map(|v| {
            v["fields"]["filter"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // HTTP and gRPC each turn info off (not logged: the level is warn then) and on again (logged).
    assert_eq!(
        changes,
        ["info,torchship::access=off", "info,torchship::access=off"],
        "the log-level changes the log shows"
    );
}
