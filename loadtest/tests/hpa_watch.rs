//! `--watch-hpa` against the stand-in API server: kube-rs's watcher lists and watches the HPA and
//! the Deployment it scales; scripted status changes (3 -> 7 -> 10 replicas) must land in the JSON
//! timeline, the text report and the HTML report, on the load's time axis.

mod common;

use std::time::Duration;

use common::{args, server};
use kube_standin::{Expect, StandIn};
use serde_json::{json, Value};

const NS: &str = "torchship";
const NAME: &str = "torchship-server";

fn hpa(rv: u32, current: i32, desired: i32, cpu: i32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": rv.to_string()},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 3, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70}}}]
        },
        "status": {
            "currentReplicas": current, "desiredReplicas": desired,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}]
        }
    })
}

fn deployment(rv: u32, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": rv.to_string()},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"spec": {"containers": []}}},
        "status": {"replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready,
            "availableReplicas": ready}
    })
}

fn list(kind: &str, api_version: &str, item: Value) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "100"}, "items": [item]})
}

fn modified(object: Value) -> Value {
    json!({"type": "MODIFIED", "object": object})
}

/// The list then the watch that kube-rs's watcher sends for one named object.
fn list_and_watch(path: &str, listed: Value, events: Vec<Value>) -> [Expect; 2] {
    let selector = format!("metadata.name={NAME}");
    [
        Expect::get(path)
            .query("fieldSelector", &selector)
            .query("limit", "500")
            .respond(200, listed),
        Expect::get(path)
            .query("fieldSelector", &selector)
            .query("watch", "true")
            .query("timeoutSeconds", "290")
            .query("allowWatchBookmarks", "true")
            .query("resourceVersion", "100")
            .stream(events, Duration::from_millis(200)),
    ]
}

/// The load tester's arguments for `load`, watching the HPA through the stand-in.
fn watching(url: &str, standin: &StandIn, load: &[&str]) -> loadtest::Args {
    let kubeconfig = standin.kubeconfig.to_str().unwrap();
    let mut extra = load.to_vec();
    extra.extend([
        "--watch-hpa",
        NAME,
        "--namespace",
        NS,
        "--kubeconfig",
        kubeconfig,
    ]);
    args(url, &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_scaling_3_7_10_lands_in_every_report() {
    let hpas = format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers");
    let deployments = format!("/apis/apps/v1/namespaces/{NS}/deployments");
    let mut script = Vec::new();
    script.extend(list_and_watch(
        &hpas,
        list(
            "HorizontalPodAutoscaler",
            "autoscaling/v2",
            hpa(101, 3, 3, 12),
        ),
        vec![
            modified(hpa(102, 3, 7, 160)),
            modified(hpa(103, 7, 7, 110)),
            modified(hpa(104, 7, 10, 95)),
            modified(hpa(105, 10, 10, 65)),
        ],
    ));
    script.extend(list_and_watch(
        &deployments,
        list("Deployment", "apps/v1", deployment(201, 3, 3)),
        vec![
            modified(deployment(202, 7, 3)),
            modified(deployment(203, 7, 7)),
            modified(deployment(204, 10, 7)),
            modified(deployment(205, 10, 10)),
        ],
    ));
    let standin = StandIn::start_unordered(script).await;
    let (url, _) = server(None, Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("loadtest-hpa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = watching(&url, &standin, &["--rate", "100", "--duration", "4s"]);
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    let text = report.text();
    println!("{text}");
    standin.finish();
    assert_eq!(report.summary.requests, 400);

    // JSON: the HPA timeline, every change once, in order, on the load's time axis.
    let v: Value = serde_json::to_value(&report).unwrap();
    let k = &v["kubernetes"];
    assert_eq!(k["hpa"], format!("{NS}/{NAME}"));
    assert_eq!(k["deployment"], format!("{NS}/{NAME}"));
    let hpa_rows: Vec<(i64, i64, i64)> = k["hpa_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["current_replicas"].as_i64().unwrap(),
                p["desired_replicas"].as_i64().unwrap(),
                p["cpu_percent"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hpa_rows,
        [
            (3, 3, 12),
            (3, 7, 160),
            (7, 7, 110),
            (7, 10, 95),
            (10, 10, 65)
        ]
    );
    let ready: Vec<i64> = k["deployment_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ready_replicas"].as_i64().unwrap())
        .collect();
    assert_eq!(ready, [3, 3, 7, 7, 10]);
    let times: Vec<f64> = k["hpa_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["t"].as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]) && times[4] < report.summary.duration_s,
        "times {times:?} must rise and fall within the load"
    );
    assert_eq!(k["errors"].as_array().unwrap().len(), 0, "{k}");

    // Text: the merged timeline.
    assert!(
        text.contains("replicas 7/10 (min 3 max 10)  cpu 95%/70%"),
        "{text}"
    );
    assert!(text.contains("ready 10/10"), "{text}");

    // HTML: the timeline table with each step, and, as a browser lays it out, the headline chart
    // first, with the load and the replicas stepping 3 -> 7 -> 10 on one time axis.
    let html = loadtest::html::render(&report).unwrap();
    for (current, desired) in [(3, 3), (3, 7), (7, 7), (7, 10), (10, 10)] {
        let row = format!("<td>HPA</td><td>{current}</td><td>{desired}</td>");
        assert!(html.contains(&row), "missing {row}");
    }
    for fetch in ["src=", "href=", "url(", "@import", "fetch("] {
        assert!(!html.contains(fetch), "self-contained: {fetch}");
    }
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    if let Some(chromium) = browser_check::required() {
        let (charts, hover) = chromium.readable_charts(&page, 1300);
        assert_eq!(charts[0]["id"], "headline");
        assert!(hover.contains("replicas current: "), "hover: {hover:?}");
        let texts = browser_check::assert_readable(&charts[0]);
        for axis in [
            "seconds since the load started",
            "requests per second",
            "replicas (pods)",
            "CPU (% of request)",
            "3 → 7",
            "7 → 10",
        ] {
            assert!(texts.iter().any(|t| t == axis), "{axis} in {texts:?}");
        }
        assert_eq!(charts[0]["series"].as_array().unwrap().len(), 7);
        let current = browser_check::series(&charts[0], "replicas current");
        assert_eq!(
            (current["min"].as_f64(), current["max"].as_f64()),
            (Some(3.0), Some(10.0))
        );
        assert_eq!(current["distinct"], 3, "{current}");
        let cpu = browser_check::series(&charts[0], "CPU utilisation");
        assert_eq!(cpu["max"].as_f64(), Some(160.0), "{cpu}");
        let offered = browser_check::series(&charts[0], "offered");
        assert!(offered["max"].as_f64() >= Some(90.0), "{offered}");
        // For a person to look at; under target/, never in the repository.
        let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hpa-report.png");
        chromium.screenshot(&page, &png, 1300, 2600).unwrap();
        println!("screenshot: {}", png.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_hpa_is_explained_not_fatal() {
    let hpas = format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers");
    let [listed, watch] = list_and_watch(
        &hpas,
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList",
            "metadata": {"resourceVersion": "100"}, "items": []}),
        vec![],
    );
    let standin = StandIn::start_unordered(vec![listed, watch]).await;
    let (url, _) = server(None, Duration::ZERO).await;
    let a = watching(&url, &standin, &["--rate", "50", "--duration", "2s"]);
    let report = loadtest::run(&a, std::future::pending()).await.unwrap();
    assert_eq!(report.summary.requests, 100);
    let k = report.kubernetes.as_ref().unwrap();
    assert!(k.hpa_timeline.is_empty());
    assert!(
        k.errors
            .iter()
            .any(|(_, e)| e.contains("no HorizontalPodAutoscaler named torchship-server")),
        "{:?}",
        k.errors
    );
}
