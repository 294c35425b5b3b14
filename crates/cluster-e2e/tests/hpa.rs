//! The real HPA controller scales the deployer's Deployment: kwok gives the pods emulated CPU use
//! (the `kwok.x-k8s.io/usage-cpu` annotation), metrics-server serves it as metrics.k8s.io, the HPA
//! computes utilisation against the pods' CPU request (1 CPU) and scales 3 -> more. Meanwhile the
//! load tester drives a real server on loopback and `--watch-hpa` records the real status changes
//! on its time axis. Lowering the use shows the scale-down held back by the HPA's `behavior`
//! (a 300 s stabilisation window). The load tester is then stopped with SIGINT (its reports are
//! still written), so the test does not wait out the load's 150 s bound.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cluster_e2e::{
    clean, env, eventually, interrupt, kubectl_json, kubectl_ok, lock, pods, Env, SERVER_PODS,
};
use serde_json::Value;

/// A kwok node: these pods must not land on the real node, where they would start containers of
/// an image nobody built for this test.
const KWOK_NODE: &str = "kwok-cpu-2";
const NS: &str = "ts-hpa";

fn hpa() -> Value {
    kubectl_json(&["get", "hpa", "torchship-server", "-n", NS])
}

fn cpu_percent(hpa: &Value) -> Option<i64> {
    hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64()
}

fn condition<'a>(hpa: &'a Value, kind: &str) -> Option<&'a Value> {
    hpa["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Every server pod uses `cpu` (e.g. "1500m") from now on.
fn use_cpu(cpu: &str) {
    kubectl_ok(&[
        "annotate",
        "pods",
        "-n",
        NS,
        "-l",
        SERVER_PODS,
        "--overwrite",
        &format!("kwok.x-k8s.io/usage-cpu={cpu}"),
    ]);
}

/// The real server on 127.0.0.1:0 with the demo models; returns it and its base URL.
fn server(env: &Env) -> (Child, String) {
    let models = env.root.join("models");
    let mut child = Command::new(env.bin_dir.join("server"))
        .args([
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--log-format",
            "json",
            "--device",
            "cpu",
        ])
        .args(["--model-repository", models.to_str().unwrap()])
        .env("RUST_LOG", "info,torchship::access=off")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "torchship server listening" {
            break v["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.map_while(Result::ok).count());
    (child, format!("http://{addr}"))
}

#[test]
fn the_real_hpa_scales_up_under_emulated_load_and_holds_the_scale_down() {
    let Some(env) = env() else { return };
    let _turn = lock();
    clean(NS);
    env.deployer(NS, &["apply", "--node", KWOK_NODE])
        .expect_code(0, "apply");
    eventually("3 pods Ready", Duration::from_secs(90), || {
        let p = pods(NS, SERVER_PODS);
        (p.len() == 3 && p.iter().all(|(_, _, _, ready)| *ready)).then_some(())
    });

    let (mut srv, url) = server(&env);
    let out = std::env::temp_dir().join(format!("torchship-hpa-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let (mut load, reports) = env.loadtest(
        &out,
        &[
            "--url",
            &url,
            "--model",
            "digits",
            // A ramp to 40 req/s, then steady: the report's first chart shows it.
            "--stages",
            "30s:40,120s:40",
            "--watch-hpa",
            "torchship-server",
            "--namespace",
            NS,
        ],
    );

    // 1.5 CPU per pod on a 1 CPU request: 150 % against a 70 % target.
    let started = std::time::Instant::now();
    use_cpu("1500m");
    let scaled = eventually("the HPA scales past 3", Duration::from_secs(120), || {
        let h = hpa();
        (h["status"]["desiredReplicas"].as_i64()? > 3).then_some(h)
    });
    let desired = scaled["status"]["desiredReplicas"].as_i64().unwrap();
    eventually(
        "the Deployment follows the HPA",
        Duration::from_secs(60),
        || (pods(NS, SERVER_PODS).len() as i64 == desired).then_some(()),
    );

    // `deployer status` reads like `kubectl describe hpa`: CPU current / target, replicas.
    let status = env
        .deployer(NS, &["status"])
        .expect_code(0, "status")
        .text();
    let cpu: i64 = status
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("resource cpu on pods (as a percentage of request): ")
        })
        .and_then(|v| v.strip_suffix("% / 70%"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("status shows current / target CPU:\n{status}"));
    // (The pods the HPA added use 1m, so the average may already be back under the target.)
    assert!(cpu > 0, "a real reading: {cpu}%\n{status}");
    assert!(
        status.contains("min replicas 3, max replicas 10; current"),
        "{status}"
    );
    eprintln!(
        "hpa: {desired} replicas desired at {cpu}% after {:?}",
        started.elapsed()
    );

    // Load gone: utilisation falls, yet the replicas stay for the 300 s scale-down window.
    use_cpu("50m");
    let held = eventually("the HPA sees the low use", Duration::from_secs(90), || {
        let h = hpa();
        (cpu_percent(&h)? < 70).then_some(h)
    });
    eprintln!("hpa: low use seen after {:?}", started.elapsed());
    let able = condition(&held, "AbleToScale").expect("AbleToScale condition");
    assert_eq!(
        able["reason"], "ScaleDownStabilized",
        "scale-down held by behavior: {able}"
    );
    assert!(
        held["status"]["currentReplicas"].as_i64().unwrap() > 3,
        "replicas kept: {held}"
    );

    // Done watching: Ctrl-C stops the load tester early; it still writes its reports.
    interrupt(&load);
    let finished = load.wait().expect("loadtest ran");
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(finished.success(), "loadtest exit: {finished}");
    let report: Value = serde_json::from_slice(&std::fs::read(&reports.json).unwrap()).unwrap();
    let k = &report["kubernetes"];
    let timeline = k["hpa_timeline"].as_array().expect("hpa_timeline");
    let first_scaled = timeline
        .iter()
        .position(|p| p["desired_replicas"].as_i64() > Some(3))
        .expect("the timeline records the scale-up");
    assert!(
        timeline[..first_scaled]
            .iter()
            .any(|p| p["desired_replicas"] == 3),
        "the timeline starts at 3 replicas: {timeline:?}"
    );
    let replicas = k["deployment_timeline"]
        .as_array()
        .expect("deployment_timeline");
    assert!(
        replicas.iter().any(|d| d["replicas"].as_i64() > Some(3)),
        "{replicas:?}"
    );
    // The report as a person opens it: its first chart shows the load ramp and the replicas
    // stepping up from 3 on one time axis, every chart readable (browser_check::assert_readable).
    if let Some(chromium) = browser_check::required() {
        let (charts, _) = chromium.readable_charts(&reports.html, 1300);
        assert_eq!(charts[0]["id"], "headline");
        let offered = browser_check::series(&charts[0], "offered");
        assert!(
            offered["first"].as_f64() < Some(10.0) && offered["max"].as_f64() > Some(30.0),
            "the ramp: {offered}"
        );
        // (The HPA's first status may still say 1 current replica: the Deployment's ready count
        // is the one that starts at 3.)
        let ready = browser_check::series(&charts[0], "replicas ready");
        assert_eq!(ready["min"].as_f64(), Some(3.0), "{ready}");
        assert!(ready["max"].as_f64() > Some(3.0), "stepped up: {ready}");
        let current = browser_check::series(&charts[0], "replicas current");
        assert!(current["max"].as_f64() > Some(3.0), "stepped up: {current}");
        let cpu = browser_check::series(&charts[0], "CPU utilisation");
        assert!(cpu["max"].as_f64() > Some(70.0), "above the target: {cpu}");
        let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-hpa-report.png");
        chromium
            .screenshot(&reports.html, &png, 1300, 2600)
            .unwrap();
        eprintln!("hpa: report screenshot {}", png.display());
    }
    std::fs::remove_dir_all(&out).ok();
    env.deployer(NS, &["delete", "--node", KWOK_NODE])
        .expect_code(0, "delete");
}
