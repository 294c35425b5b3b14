//! `loadtest compare` on the JSON reports of two real runs (against the small v2 endpoint of
//! tests/common, one of them stalling), as a person runs it: the binary, its text, its exit codes.

mod common;

use std::time::Duration;

use common::{args, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_side_by_side_with_ratios() {
    let dir = std::env::temp_dir().join(format!("loadtest-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    // The second server stalls 50 ms at its 10th request: B's max latency must show it.
    for (name, stall_at) in [("fast.json", None), ("stalls.json", Some(10))] {
        let (url, _) = server(stall_at, Duration::from_millis(50)).await;
        let path = dir.join(name);
        let a = args(
            &url,
            &[
                "--concurrency",
                "2",
                "--requests",
                "200",
                "--json",
                path.to_str().unwrap(),
            ],
        );
        let report = loadtest::run(&a, std::future::pending()).await.unwrap();
        report.write_files(&a).unwrap();
        files.push(path);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("compare")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert!(
        stdout.contains("A = fast.json: closed loop, 2 clients"),
        "{stdout}"
    );
    assert!(stdout.contains("B = stalls.json"), "{stdout}");
    let max_line = stdout
        .lines()
        .find(|l| l.starts_with("max ms (uncorrected)"))
        .unwrap();
    let cells: Vec<f64> = max_line
        .split_whitespace()
        .skip(3)
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(cells[1] >= 50.0, "the stall is B's max: {max_line}");
    assert!(cells[2] > 1.0, "B/A above 1: {max_line}");

    // A file that is not a report, and a single report: clear errors, no panic.
    let bogus = dir.join("bogus.json");
    std::fs::write(&bogus, "{\"not\": \"a report\"}").unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("compare")
        .args([&files[0], &bogus])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("bogus.json: not a loadtest --json report"),
        "{stderr}"
    );
    let one = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("compare")
        .arg(&files[0])
        .output()
        .unwrap();
    assert_eq!(one.status.code(), Some(2), "{one:?}");
    assert!(!String::from_utf8_lossy(&one.stderr).contains("panicked"));
}
