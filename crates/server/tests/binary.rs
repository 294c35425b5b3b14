//! The real `server` binary, as `cargo run -p server` starts it: no LD_LIBRARY_PATH (the rpath finds
//! libtorch), port 0, JSON logs, SIGTERM for a clean exit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_starts_without_library_path_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--port", "0", "--log-format", "json", "--device", "cpu"])
        .arg("--model-repository")
        .arg(common::models_dir())
        .env_remove("LD_LIBRARY_PATH")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        let v: Value = serde_json::from_str(&line).expect("JSON log line");
        if v["fields"]["message"] == "torchship server listening" {
            break v["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    // Drain the rest of the log so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    assert_eq!(
        http.get(format!("{base}/v2/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Readiness is a condition to wait for (as a kubelet does): poll it, bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/v2/health/ready"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heldout = common::heldout();
    let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": heldout.inputs[0]}]});
    let v: Value = http
        .post(format!("{base}/v2/models/digits/infer"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["outputs"][0]["shape"], json!([1, 10]));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "server exited with {exit:?} after SIGTERM");
    drain.join().unwrap();
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
