//! The HTML reports as a person sees them: two real runs against the small v2 endpoint of
//! tests/common (the second stalls once; the first also scrapes the endpoint's /metrics) are
//! written with `--html` and `--json`, `loadtest compare --html` overlays them, and headless
//! Chromium lays each page out at 1300 px: every chart must be there, in reading order, readable
//! (browser_check::assert_readable) and carry the series it should. The watched-HPA report is
//! checked the same way in tests/hpa_watch.rs, and on the real cluster in crates/cluster-e2e.

mod common;

use std::time::Duration;

use common::{args, server};
use serde_json::Value;

const ORDER: [&str; 5] = ["headline", "latency", "errors", "server", "spectrum"];

fn names(chart: &Value) -> Vec<String> {
    chart["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_their_comparison_render_readable_charts() {
    let dir = std::env::temp_dir().join(format!("loadtest-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut jsons = Vec::new();
    for (name, stall_at, extra) in [
        ("a", None, vec!["--scrape-metrics"]),
        ("b", Some(50), vec![]),
    ] {
        let (url, _) = server(stall_at, Duration::from_millis(80)).await;
        let (json, html) = (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.html")),
        );
        let mut flags = vec!["--stages", "1s:200,2s:200", "--connections", "8"];
        flags.extend(extra);
        flags.extend([
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ]);
        let a = args(&url, &flags);
        let report = loadtest::run(&a, std::future::pending()).await.unwrap();
        report.write_files(&a).unwrap();
        jsons.push(json);
    }
    let compared = dir.join("compare.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("compare")
        .args(&jsons)
        .args(["--html", compared.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&compared).unwrap();
    assert!(page.contains(r#"<table id="differences">"#), "{page}");
    assert!(page.contains("<th>A = a.json</th><th>B = b.json</th><th>B/A</th>"));
    let Some(chromium) = browser_check::required() else {
        return;
    };

    // One run: the load ramp first, then latency, errors, the server's view and the spectrum.
    let (charts, hover) = chromium.readable_charts(&dir.join("a.html"), 1300);
    assert_eq!(browser_check::ids(&charts), ORDER);
    assert!(
        hover.starts_with("t = ") && hover.contains("\noffered: ") && hover.contains(" req/s"),
        "hover: {hover:?}"
    );
    // A laptop's narrower window: the legend moves under the plot, still readable.
    chromium.readable_charts(&dir.join("a.html"), 800);
    let headline = &charts[0];
    assert_eq!(names(headline), ["offered", "achieved"], "no HPA watched");
    let offered = browser_check::series(headline, "offered");
    assert!(
        offered["first"].as_f64() < offered["max"].as_f64(),
        "a ramp: {offered}"
    );
    assert_eq!(
        names(&charts[1]),
        [
            "p50 corrected",
            "p50 uncorrected",
            "p90 corrected",
            "p90 uncorrected",
            "p99 corrected",
            "p99 uncorrected"
        ]
    );
    let spectrum = browser_check::assert_readable(&charts[4]);
    for label in ["0%", "90%", "99%", "latency (ms)"] {
        assert!(
            spectrum.iter().any(|t| t == label),
            "{label} in {spectrum:?}"
        );
    }

    // The comparison: each chart carries both runs, B's stall at the top of its spectrum.
    let (charts, _) = chromium.readable_charts(&compared, 1300);
    assert_eq!(browser_check::ids(&charts), ORDER);
    assert_eq!(
        names(&charts[0]),
        ["A offered", "A achieved", "B offered", "B achieved"]
    );
    let b = browser_check::series(&charts[4], "B corrected");
    let a = browser_check::series(&charts[4], "A corrected");
    assert!(
        b["max"].as_f64() >= Some(80.0) && a["max"].as_f64() < Some(80.0),
        "{a} {b}"
    );
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-report.png");
    chromium.screenshot(&compared, &png, 1300, 2400).unwrap();
    println!("screenshot: {}", png.display());
    std::fs::remove_dir_all(&dir).unwrap();
}
