//! The real `server` binary, as `cargo run -p server` starts it: no LD_LIBRARY_PATH (the rpath finds
//! libtorch), port 0, JSON logs, SIGTERM for a clean exit.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Process;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_starts_without_library_path_serves_and_stops_on_sigterm() {
    let repo = common::models_dir();
    let server = Process::spawn(&[
        "--shutdown-delay",
        "100ms",
        "--model-repository",
        repo.to_str().unwrap(),
    ]);
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(server.url("/v2/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.wait_ready().await;
    let heldout = common::heldout();
    let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": heldout.inputs[0]}]});
    let v: Value = common::post_json(&http, server.url("/v2/models/digits/infer"), &body).await;
    assert_eq!(v["outputs"][0]["shape"], json!([1, 10]));
    // The image's HEALTHCHECK: `server --healthcheck` with the same host/port flags.
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let healthcheck = || {
        Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--healthcheck", "--host", "0.0.0.0", "--port", &port])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap()
    };
    let live = healthcheck();
    assert!(live.status.success(), "{live:?}");
    server.signal("TERM");
    let (status, log) = server.wait(Duration::from_secs(30));
    let gone = healthcheck();
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("unhealthy: connect 127.0.0.1:"));
    assert!(
        status.success(),
        "server exited with {status:?} after SIGTERM"
    );
    assert!(
        log.iter().any(|l| l.contains("drained; exiting")),
        "{log:?}"
    );
}

#[test]
fn a_missing_repository_fails_fast_and_says_which() {
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--port", "0", "--model-repository", "/nonexistent/models"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model repository '/nonexistent/models' cannot be read"),
        "{stderr}"
    );
}

/// A duration that would overflow a deadline (`Instant + d`) is refused at start-up with a clear
/// message, never a panic on the first request.
#[test]
fn an_absurd_duration_flag_is_refused_without_a_panic() {
    for flag in ["--default-timeout", "--drain-timeout", "--max-queue-delay"] {
        let out = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--port", "0", flag, "18446744073709551615s"])
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("longer than a year"), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}
