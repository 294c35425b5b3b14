//! Bounded memory: the load tester, as its own process, at 2,000 req/s for a minute. Its JSON
//! series records its resident memory each second; RSS at the 60th second must be within 10% of
//! RSS at the 10th (a tester that kept samples would grow by megabytes a minute at this rate).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_flat_at_2000_per_second_for_a_minute() {
    let (url, count) = server(None, Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("loadtest-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", &url, "--model", "m", "--rate", "2000"])
        .args(["--duration", "61s", "--json", json.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["summary"]["requests"], 122_000);
    assert_eq!(count.load(Ordering::SeqCst), 122_000);
    let rss = |t: usize| v["series"][t]["client_rss_mib"].as_f64().unwrap();
    let (at10, at60) = (rss(10), rss(60));
    let every5: Vec<String> = (0..=60)
        .step_by(5)
        .map(|t| format!("{t}s {:.1}", rss(t)))
        .collect();
    println!("client RSS (MiB): {}", every5.join(", "));
    assert!(at10 > 0.0, "RSS is read from /proc/self/statm");
    assert!(
        (at60 - at10).abs() / at10 <= 0.10,
        "RSS moved from {at10:.1} MiB to {at60:.1} MiB"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
