//! Triton's own Python clients (`tritonclient[http,grpc]`, installed by scripts/setup.sh) against
//! the real server: health, metadata, config, inference on `digits` and `mlp` (JSON and binary over
//! HTTP; raw and typed contents over gRPC), request ids, errors, results equal to in-process
//! libtorch. The checks live in tests/fixtures/triton_client.py and triton_grpc_client.py (shared
//! helpers in checks.py).

mod common;

use common::{models_dir, venv_python, TestServer};

/// Runs one of the fixture scripts against `address`; its last line counts the checks.
async fn run_script(name: &str, address: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let out = tokio::process::Command::new(venv_python())
        .arg(script)
        .arg(address)
        .arg(models_dir())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    println!("{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_http_works_unchanged() {
    let server = TestServer::demo().await;
    let host = server.base.trim_start_matches("http://").to_string();
    run_script("triton_client.py", &host).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_grpc_works_unchanged() {
    let server = TestServer::demo().await;
    run_script("triton_grpc_client.py", &server.grpc).await;
    server.stop().await;
}
