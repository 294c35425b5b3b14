//! Triton's own Python HTTP client (`tritonclient[http]`, installed by scripts/setup.sh) against the
//! real server: health, metadata, JSON and binary inference on `digits` and `mlp`, results equal to
//! in-process libtorch. The checks live in tests/fixtures/triton_client.py.

mod common;

use common::{models_dir, venv_python, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_http_works_unchanged() {
    let server = TestServer::demo().await;
    let host = server.base.trim_start_matches("http://").to_string();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton_client.py");
    let out = tokio::process::Command::new(venv_python())
        .arg(script)
        .arg(&host)
        .arg(models_dir())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "triton_client.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    println!("{stdout}");
    server.stop().await;
}
