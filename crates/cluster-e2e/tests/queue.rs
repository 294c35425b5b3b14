//! The queue autoscaler on real pods, through a real metrics pipeline: `deployer apply
//! --custom-metrics` puts KEDA's ScaledObject in the HPA's place; Prometheus (scripts/cluster.sh,
//! k8s/monitoring/prometheus.yml) scrapes the server's pods on the real node through Kubernetes
//! service discovery; KEDA's Prometheus trigger reads the namespace's mean queue
//! (`sum(rate(torchship_queue_duration_seconds_sum[30s]))`), its metrics API server serves it as
//! an External metric, and the controller manager's HPA scales on it. The pods get a CPU limit of
//! 200m, so three of them cannot keep up with the step and requests queue.
//!
//! One run, in order: the step (10 -> 240 -> 10 req/s of mlp) makes the HPA scale up on the
//! queue (its status shows the External metric's value over its target; there is no CPU metric);
//! Prometheus is stopped while the replicas are up: the HPA reports FailedGetExternalMetric and
//! keeps its replicas, also after the load has dropped and a working HPA would have scaled down,
//! and `deployer status` quotes KEDA's own error; Prometheus started again, the metric returns and
//! the HPA scales back down to 3. The load tester's report shows the metric and the replicas.

use std::process::Command;
use std::time::{Duration, Instant};

use cluster_e2e::{
    clean, env, eventually, kubectl_json, lock, pods, server_image, Env, Reports, SERVER_PODS,
};
use serde_json::Value;

const NODE: &str = "real-cpu-1";
const NS: &str = "ts-queue";
/// Prometheus as scripts/cluster.sh runs it, in the cluster's namespace.
const PROMETHEUS: &str = "http://127.0.0.1:9090";
/// The step: 16 s at 10 req/s, 100 s at 240, 80 s at 10.
const STAGES: &str = "1s:10,15s:10,1s:240,99s:240,1s:10,79s:10";
const STEP_START: Duration = Duration::from_secs(16);
const STEP_END: Duration = Duration::from_secs(117);
/// The scale-down stabilization window the test applies.
const WINDOW: Duration = Duration::from_secs(30);

fn hpa() -> Value {
    kubectl_json(&["get", "hpa", "torchship-server", "-n", NS])
}

/// The HPA's reading of the External metric, per pod (`1333m` -> 1.333).
fn external_value(h: &Value) -> Option<f64> {
    let m = h["status"]["currentMetrics"]
        .as_array()?
        .iter()
        .find(|m| m["type"] == "External")?;
    let q = m["external"]["current"]["averageValue"].as_str()?;
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|v| v / 1000.0),
        None => q.parse().ok(),
    }
}

fn condition(h: &Value, type_: &str) -> Option<(String, String)> {
    let c = h["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

fn replicas() -> i64 {
    let d = kubectl_json(&["get", "deployment", "torchship-server", "-n", NS]);
    d["spec"]["replicas"].as_i64().unwrap_or(0)
}

/// `scripts/cluster.sh prometheus stop|start`.
fn prometheus(env: &Env, what: &str) {
    let ok = Command::new(env.root.join("scripts/cluster.sh"))
        .args(["prometheus", what])
        .status()
        .expect("scripts/cluster.sh prometheus");
    assert!(ok.success(), "scripts/cluster.sh prometheus {what}: {ok}");
}

/// Starts Prometheus again however the test ends: the tests after this one need it.
struct PrometheusBack<'a>(&'a Env);

impl Drop for PrometheusBack<'_> {
    fn drop(&mut self) {
        let up = Command::new("curl")
            .args(["-fsS", &format!("{PROMETHEUS}/-/ready")])
            .output();
        if !up.is_ok_and(|o| o.status.success()) {
            prometheus(self.0, "start");
        }
    }
}

fn status(env: &Env) -> String {
    env.deployer(NS, &["status", "--custom-metrics"])
        .expect_code(0, "status")
        .text()
}

#[test]
fn the_hpa_scales_on_the_queue_through_prometheus_and_keda_and_holds_without_it() {
    let Some(env) = env() else { return };
    let image = server_image();
    let _turn = lock();
    clean(NS);
    let _back = PrometheusBack(&env);
    let applied = env.deployer(
        NS,
        &[
            "apply",
            "--node",
            NODE,
            "--image",
            &image,
            "--image-pull-policy",
            "Never",
            "--cpu-request",
            "200m",
            "--cpu-limit",
            "200m",
            "--memory-request",
            "768Mi",
            "--max-replicas",
            "6",
            "--scale-down-window",
            "30s",
            "--custom-metrics",
            "--prometheus-url",
            PROMETHEUS,
            "--queue-target",
            "2",
            "--timeout",
            "300s",
        ],
    );
    let text = applied.expect_code(0, "apply").text();
    assert!(
        text.contains("KEDA is installed and external.metrics.k8s.io is served"),
        "{text}"
    );
    assert!(
        text.contains("scaledobject.keda.sh/torchship-server created"),
        "{text}"
    );
    assert!(
        text.contains("successfully rolled out (3 replicas available)"),
        "{text}"
    );
    // KEDA made the HPA, under the deployer's name, with the queue as its only metric.
    let h = eventually("KEDA's HPA", Duration::from_secs(60), || {
        let h = hpa();
        (h["metadata"]["ownerReferences"][0]["kind"] == "ScaledObject").then_some(h)
    });
    let metrics = h["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(metrics[0]["type"], "External", "not CPU: {metrics:?}");
    assert_eq!(metrics[0]["external"]["metric"]["name"], "s0-prometheus");
    assert_eq!(metrics[0]["external"]["target"]["averageValue"], "2");

    let svc = kubectl_json(&["get", "service", "torchship-server", "-n", NS]);
    let url = format!("http://{}", svc["spec"]["clusterIP"].as_str().unwrap());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("queue-hpa");
    let t0 = Instant::now();
    let (mut load, Reports { json, html }) = env.loadtest(
        &dir,
        &[
            "--url",
            &url,
            "--model",
            "mlp",
            "--stages",
            STAGES,
            "--connections",
            "64",
            "--connection-lifetime",
            "1s",
            "--timeout",
            "10s",
            "--watch-hpa",
            "torchship-server",
            "--namespace",
            NS,
        ],
    );
    let up = eventually(
        "the HPA scales up on the queue",
        Duration::from_secs(90),
        || {
            let h = hpa();
            let over = external_value(&h)? > 2.0;
            (over && h["status"]["desiredReplicas"].as_i64()? >= 5).then_some(h)
        },
    );
    eprintln!(
        "queue: HPA {} after {:?} (step at {STEP_START:?}): {}",
        up["status"]["desiredReplicas"],
        t0.elapsed(),
        up["status"]["currentMetrics"]
    );
    assert!(
        t0.elapsed() < STEP_END - Duration::from_secs(30),
        "scaled up too late to test the fault"
    );

    prometheus(&env, "stop");
    let failed = eventually("FailedGetExternalMetric", Duration::from_secs(60), || {
        let h = hpa();
        (condition(&h, "ScalingActive")? == ("False".into(), "FailedGetExternalMetric".into()))
            .then_some(h)
    });
    let held = failed["status"]["currentReplicas"].as_i64().unwrap();
    assert!(held >= 5, "{failed}");
    // KEDA records the refused connection as an event once its next poll fails.
    let said = eventually(
        "deployer status quoting KEDA's error",
        Duration::from_secs(30),
        || {
            let said = status(&env);
            said.contains("connection refused").then_some(said)
        },
    );
    for want in [
        "FailedGetExternalMetric",
        "KEDA's trigger fails (its last error",
        "127.0.0.1:9090",
        "keeps its replicas",
    ] {
        assert!(
            said.contains(want),
            "deployer status lacks '{want}':\n{said}"
        );
    }
    eprintln!("queue: deployer status without Prometheus:\n{said}");
    // Held through the end of the step and past the point where a working HPA would have scaled
    // down (the load at 10 req/s for longer than the window).
    let until = STEP_END + WINDOW + Duration::from_secs(15);
    while t0.elapsed() < until {
        assert_eq!(replicas(), held, "the replicas changed without a metric");
        let h = hpa();
        assert_eq!(
            condition(&h, "ScalingActive").map(|c| c.1).as_deref(),
            Some("FailedGetExternalMetric"),
            "{h}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "queue: {held} replicas held without Prometheus until {:?}",
        t0.elapsed()
    );

    prometheus(&env, "start");
    let t1 = Instant::now();
    eventually("the metric back", Duration::from_secs(60), || {
        let h = hpa();
        (condition(&h, "ScalingActive")?.1 == "ValidMetricFound").then_some(())
    });
    eventually("back at 3 replicas", Duration::from_secs(150), || {
        (replicas() == 3 && pods(NS, SERVER_PODS).len() == 3).then_some(())
    });
    eprintln!(
        "queue: metric back and 3 replicas {:?} after Prometheus started",
        t1.elapsed()
    );
    assert!(!status(&env).contains("gets no queue metric"));
    assert!(load.wait().unwrap().success(), "loadtest");

    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    eprintln!("queue: summary {}", r["summary"]);
    let k = &r["kubernetes"];
    let hpa_points = k["hpa_timeline"].as_array().unwrap();
    assert!(
        hpa_points.iter().all(|p| p["metric"] == "s0-prometheus"),
        "{hpa_points:?}"
    );
    assert!(
        hpa_points
            .iter()
            .any(|p| p["metric_value"].as_f64() > Some(2.0)),
        "{hpa_points:?}"
    );
    let blocked = |p: &&Value| {
        p["blocked"]
            .as_str()
            .is_some_and(|b| b.contains("FailedGetExternalMetric"))
    };
    assert!(
        hpa_points.iter().any(|p| blocked(&p)),
        "the outage in the report: {hpa_points:?}"
    );
    let most = k["deployment_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["ready_replicas"].as_i64())
        .max();
    assert!(most >= Some(5), "{k}");
    if let Some(chromium) = browser_check::required() {
        let (charts, _) = chromium.readable_charts(&html, 1300);
        assert_eq!(charts[0]["id"], "headline");
        let metric = browser_check::series(&charts[0], "s0-prometheus");
        assert!(
            metric["max"].as_f64() > Some(2.0),
            "the queue over its target: {metric}"
        );
        let ready = browser_check::series(&charts[0], "replicas ready");
        assert!(ready["max"].as_f64() >= Some(5.0), "{ready}");
    }
    env.deployer(NS, &["delete", "--node", NODE, "--custom-metrics"])
        .expect_code(0, "delete");
}
