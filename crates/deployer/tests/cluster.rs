//! The real `deployer` binary against a stand-in Kubernetes API server on loopback that checks every
//! request: method, path, query (fieldManager, force, dryRun, selectors), content type and body.

use tokio::process::Command;

use deployer::manifests::{Bundle, RenderOptions};
use kube_standin::{status, Expect, StandIn};
use serde_json::{json, Value};

const NS: &str = "/api/v1/namespaces/torchship";
const APPS: &str = "/apis/apps/v1/namespaces/torchship";
const MANAGER: &str = "torchship-deployer";

/// (path, rendered object) for each object, in apply order.
fn objects(options: &RenderOptions) -> Vec<(String, Value)> {
    let paths = [
        NS.to_string(),
        format!("{NS}/serviceaccounts/torchship-server"),
        format!("{APPS}/deployments/torchship-server"),
        format!("{NS}/services/torchship-server"),
        "/apis/autoscaling/v2/namespaces/torchship/horizontalpodautoscalers/torchship-server"
            .into(),
        "/apis/policy/v1/namespaces/torchship/poddisruptionbudgets/torchship-server".into(),
        "/apis/networking.k8s.io/v1/namespaces/torchship/networkpolicies/torchship-server".into(),
    ];
    paths
        .into_iter()
        .zip(Bundle::render(options).unwrap().objects())
        .collect()
}

fn with_rv(v: &Value, rv: &str) -> Value {
    let mut v = v.clone();
    v["metadata"]["resourceVersion"] = json!(rv);
    v
}

fn not_found(what: &str) -> Value {
    status(404, "NotFound", &format!("{what} not found"))
}

fn preflight() -> Vec<Expect> {
    vec![
        Expect::get("/version").respond(200, json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "x", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"})),
        Expect::get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io").respond(200, json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}})),
    ]
}

/// Without --custom-metrics, apply first looks for a ScaledObject a queue deploy left; a cluster
/// without KEDA has no such resource (404).
fn no_scaled_object() -> Expect {
    let path = "/apis/keda.sh/v1alpha1/namespaces/torchship/scaledobjects/torchship-server";
    Expect::get(path).respond(404, not_found(path))
}

/// The first apply: every object is new (GET 404, then server-side apply of exactly the rendered body).
fn first_apply(options: &RenderOptions) -> Vec<Expect> {
    let mut script = vec![no_scaled_object()];
    for (path, obj) in objects(options) {
        script.push(Expect::get(&path).respond(404, not_found(&path)));
        let echo = with_rv(&obj, "1");
        script.push(
            Expect::apply(&path, MANAGER)
                .body_eq(obj)
                .respond(200, echo),
        );
    }
    script
}

fn deployment(options: &RenderOptions, updated: i64, available: i64) -> Value {
    let mut d = with_rv(&objects(options)[2].1, "2");
    d["metadata"]["generation"] = json!(1);
    d["spec"]["replicas"] = json!(3);
    d["status"] = json!({"observedGeneration": 1, "replicas": updated.max(3), "updatedReplicas": updated, "availableReplicas": available, "readyReplicas": available});
    d
}

fn node(name: &str, labels: Value, taints: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "resourceVersion": "41", "labels": labels}, "spec": {"taints": taints}})
}

async fn deployer(standin: &StandIn, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(args)
        .arg("--kubeconfig")
        .arg(&standin.kubeconfig)
        .args(["--poll-interval", "100ms"])
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_apply_pins_the_node_keeping_its_foreign_taint_and_waits_for_the_rollout() {
    let options = RenderOptions {
        pinned: true,
        ..Default::default()
    };
    let foreign = json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]);
    let mut script = preflight();
    script.push(Expect::get("/api/v1/nodes/worker-2").respond(
        200,
        node(
            "worker-2",
            json!({"kubernetes.io/hostname": "worker-2"}),
            foreign.clone(),
        ),
    ));
    script.extend(first_apply(&options));
    script.push(Expect::get("/api/v1/nodes/worker-2").respond(
        200,
        node(
            "worker-2",
            json!({"kubernetes.io/hostname": "worker-2"}),
            foreign.clone(),
        ),
    ));
    // Read-modify-write: the whole node back, with its resourceVersion, the foreign taint kept.
    script.push(
        Expect::new("PUT", "/api/v1/nodes/worker-2")
            .query("fieldManager", MANAGER)
            .content_type("application/json")
            .body(|b| {
                let want_taints = json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}, {"key": "role", "value": "pytorch", "effect": "NoSchedule"}]);
                if b["metadata"]["resourceVersion"] != "41" {
                    return Err(format!("resourceVersion missing: {b}"));
                }
                if b["spec"]["taints"] != want_taints {
                    return Err(format!("taints {}", b["spec"]["taints"]));
                }
                if b["metadata"]["labels"]["role"] != "pytorch" || b["metadata"]["labels"]["kubernetes.io/hostname"] != "worker-2" {
                    return Err(format!("labels {}", b["metadata"]["labels"]));
                }
                Ok(())
            })
            .respond_with(|b| (200, b.clone())),
    );
    script.push(
        Expect::get(&format!("{APPS}/deployments/torchship-server"))
            .respond(200, deployment(&options, 1, 0)),
    );
    script.push(
        Expect::get(&format!("{APPS}/deployments/torchship-server"))
            .respond(200, deployment(&options, 3, 2)),
    );
    script.push(
        Expect::get(&format!("{APPS}/deployments/torchship-server"))
            .respond(200, deployment(&options, 3, 3)),
    );
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["--node", "worker-2"]).await;
    standin.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("deployment.apps/torchship-server created"),
        "{out}"
    );
    assert!(
        out.contains("node/worker-2 labelled role=pytorch and tainted role=pytorch:NoSchedule"),
        "{out}"
    );
    assert!(
        out.contains("waiting for rollout: 1 of 3 new replicas have been updated"),
        "{out}"
    );
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_changes_nothing_and_says_so() {
    let options = RenderOptions::default();
    let mut script = preflight();
    script.push(no_scaled_object());
    for (path, obj) in objects(&options) {
        let live = with_rv(&obj, "7");
        script.push(Expect::get(&path).respond(200, live.clone()));
        script.push(
            Expect::apply(&path, MANAGER)
                .body_eq(obj)
                .respond(200, live),
        );
    }
    script.push(
        Expect::get(&format!("{APPS}/deployments/torchship-server"))
            .respond(200, deployment(&options, 3, 3)),
    );
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["apply"]).await;
    standin.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches(" unchanged").count(), 7, "{out}");
    assert!(
        out.contains("no changes: everything was already as rendered"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_times_out_with_an_untolerated_taint_diagnosis() {
    let options = RenderOptions::default();
    let mut script = preflight();
    script.extend(first_apply(&options));
    script.push(
        Expect::get(&format!("{APPS}/deployments/torchship-server"))
            .respond(200, deployment(&options, 3, 0))
            .repeatedly(),
    );
    script.push(
        Expect::get(&format!("{NS}/pods"))
            .query("labelSelector", "app.kubernetes.io/name=torchship-server")
            .respond(200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                "metadata": {"name": "torchship-server-abc", "namespace": "torchship"},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}]})),
    );
    // What a real 1.36 scheduler writes (no taint in the message): the deployer reads the nodes.
    script.push(Expect::get("/api/v1/nodes").respond(200, json!({
        "apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [
            {"metadata": {"name": "worker-1"}, "spec": {"taints": [{"key": "role", "value": "pytorch", "effect": "NoSchedule"}]}},
            {"metadata": {"name": "worker-2"}, "spec": {}}]})));
    script.push(
        Expect::get(&format!("{NS}/events"))
            .query("fieldSelector", "involvedObject.name=torchship-server-abc")
            .respond(200, json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [{
                "metadata": {"name": "e1", "namespace": "torchship"},
                "involvedObject": {"kind": "Pod", "name": "torchship-server-abc"},
                "reason": "FailedScheduling", "type": "Warning",
                "message": "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint(s). preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."}]})),
    );
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["apply", "--timeout", "1s"]).await;
    standin.finish();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("the rollout did not finish within 1s"),
        "{err}"
    );
    assert!(err.contains("pod torchship-server-abc cannot be scheduled: 1 node(s) had untolerated taint(s): the pods do not tolerate the taint worker-1: role=pytorch:NoSchedule"), "{err}");
    assert!(err.contains("--node NAME"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_preflight_explains_missing_gpus_and_device_plugin_before_applying_anything() {
    let mut script = preflight();
    script.push(
        Expect::get("/api/v1/nodes").query("labelSelector", "nvidia.com/gpu.present=true").respond(200, json!({
            "apiVersion": "v1", "kind": "NodeList", "metadata": {},
            "items": [{"metadata": {"name": "gpu-1"}, "status": {"allocatable": {"nvidia.com/gpu": "2", "cpu": "8"}}}]})),
    );
    script.push(Expect::get("/apis/apps/v1/daemonsets").respond(
        200,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSetList", "metadata": {}, "items": []}),
    ));
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["apply", "--profile", "gpu"]).await;
    standin.finish();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("preflight failed"), "{err}");
    assert!(
        err.contains("2 nvidia.com/gpu allocatable")
            && err.contains("needs 3: 1 pod(s) would stay Pending"),
        "{err}"
    );
    assert!(err.contains("no NVIDIA device plugin"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_conflict_answers_are_explained() {
    let options = RenderOptions::default();
    let objs = objects(&options);
    let mut script = preflight();
    script.push(no_scaled_object());
    script.push(Expect::get(&objs[0].0).respond(404, not_found("namespace")));
    script.push(Expect::apply(&objs[0].0, MANAGER).respond(403, status(403, "Forbidden", "namespaces \"torchship\" is forbidden: User \"system:serviceaccount:ci:deployer\" cannot patch resource \"namespaces\" in API group \"\" at the cluster scope")));
    let standin = StandIn::start(script).await;
    let (code, _, err) = deployer(&standin, &["apply"]).await;
    standin.finish();
    assert_eq!(code, 2);
    assert!(
        err.contains("not allowed to apply Namespace torchship (403 Forbidden)"),
        "{err}"
    );
    assert!(
        err.contains("cannot patch resource \"namespaces\"")
            && err.contains("k8s/rbac/deployer.yaml"),
        "{err}"
    );

    let mut script = preflight();
    script.push(no_scaled_object());
    for (path, obj) in objs.iter().take(2) {
        script.push(Expect::get(path).respond(200, with_rv(obj, "3")));
        script.push(
            Expect::apply(path, MANAGER)
                .query("force", "true")
                .body_eq(obj.clone())
                .respond(200, with_rv(obj, "3")),
        );
    }
    script.push(Expect::get(&objs[2].0).respond(200, with_rv(&objs[2].1, "3")));
    script.push(Expect::apply(&objs[2].0, MANAGER).query("force", "true").respond(409, status(409, "Conflict", "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.template.spec.containers[name=\"server\"].image")));
    let standin = StandIn::start(script).await;
    let (code, _, err) = deployer(&standin, &["apply", "--force-conflicts"]).await;
    standin.finish();
    assert_eq!(code, 2);
    assert!(
        err.contains("conflict while trying to apply Deployment torchship-server (409)"),
        "{err}"
    );
    assert!(
        err.contains("kubectl-edit") && err.contains("--force-conflicts"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_everything_and_only_our_taint() {
    let options = RenderOptions::default();
    let objs = objects(&options);
    let mut script = Vec::new();
    for (i, (path, _)) in objs.iter().enumerate().rev() {
        let code = if i == 3 { 404 } else { 200 };
        let body = if code == 404 {
            not_found(path)
        } else {
            status(200, "", "deleted")
        };
        script.push(Expect::new("DELETE", path).respond(code, body));
    }
    let taints = json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}, {"key": "role", "value": "pytorch", "effect": "NoSchedule"}]);
    script.push(Expect::get("/api/v1/nodes/worker-2").respond(
        200,
        node("worker-2", json!({"role": "pytorch", "zone": "a"}), taints),
    ));
    script.push(
        Expect::new("PUT", "/api/v1/nodes/worker-2")
            .query("fieldManager", MANAGER)
            .body(|b| {
                (b["spec"]["taints"]
                    == json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}])
                    && b["metadata"]["labels"] == json!({"zone": "a"}))
                .then_some(())
                .ok_or(format!("node after delete: {b}"))
            })
            .respond_with(|b| (200, b.clone())),
    );
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["delete", "--node", "worker-2"]).await;
    standin.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Service/torchship-server already gone"),
        "{out}"
    );
    assert!(out.contains("Namespace/torchship deleted"), "{out}");
    assert!(
        out.contains("node/worker-2 label and taint removed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_run_sends_dry_run_all_and_waits_for_nothing() {
    let options = RenderOptions::default();
    let mut script = preflight();
    for (path, obj) in objects(&options) {
        script.push(Expect::get(&path).respond(404, not_found(&path)));
        script.push(
            Expect::apply(&path, MANAGER)
                .query("dryRun", "All")
                .body_eq(obj.clone())
                .respond(200, with_rv(&obj, "")),
        );
    }
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["apply", "--dry-run", "server"]).await;
    standin.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("deployment.apps/torchship-server created (server dry run)"),
        "{out}"
    );
    assert!(out.contains("server dry run: nothing was stored"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_exits_1_on_changes_and_0_without() {
    let options = RenderOptions {
        max_replicas: Some(12),
        ..Default::default()
    };
    let objs = objects(&options);
    let base = objects(&RenderOptions::default());
    let mut script = Vec::new();
    for (i, (path, obj)) in objs.iter().enumerate() {
        // Live is the default render; the dry run returns the merged result.
        script.push(Expect::get(path).respond(200, with_rv(&base[i].1, "9")));
        script.push(
            Expect::apply(path, MANAGER)
                .query("dryRun", "All")
                .body_eq(obj.clone())
                .respond(200, with_rv(obj, "9")),
        );
    }
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["diff", "--max-replicas", "12"]).await;
    standin.finish();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("~ HorizontalPodAutoscaler/torchship-server would change:"),
        "{out}"
    );
    assert!(
        out.contains("-   maxReplicas: 10") && out.contains("+   maxReplicas: 12"),
        "{out}"
    );

    let mut script = Vec::new();
    for (path, obj) in &base {
        script.push(Expect::get(path).respond(200, with_rv(obj, "9")));
        script.push(
            Expect::apply(path, MANAGER)
                .query("dryRun", "All")
                .respond(200, with_rv(obj, "9")),
        );
    }
    let standin = StandIn::start(script).await;
    let (code, out, _) = deployer(&standin, &["diff"]).await;
    standin.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no changes"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_what_describe_hpa_shows_and_where_pods_run() {
    let hpa_path =
        "/apis/autoscaling/v2/namespaces/torchship/horizontalpodautoscalers/torchship-server";
    let mut hpa = with_rv(&objects(&RenderOptions::default())[4].1, "5");
    hpa["status"] = json!({
        "currentReplicas": 4, "desiredReplicas": 6,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 93}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale", "message": "the HPA controller was able to update the target scale to 6", "lastTransitionTime": "2026-11-28T10:00:00Z"}]
    });
    let script = vec![
        Expect::get(hpa_path).respond(200, hpa),
        Expect::get(&format!("{NS}/events"))
            .query("fieldSelector", "involvedObject.name=torchship-server,involvedObject.kind=HorizontalPodAutoscaler")
            .respond(200, json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [{
                "metadata": {"name": "e", "namespace": "torchship"}, "involvedObject": {"kind": "HorizontalPodAutoscaler", "name": "torchship-server"},
                "reason": "SuccessfulRescale", "message": "New size: 6; reason: cpu resource utilization (percentage of request) above target"}]})),
        Expect::get(&format!("{NS}/pods")).query("labelSelector", "app.kubernetes.io/name=torchship-server").respond(200, json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                {"metadata": {"name": "p1"}, "spec": {"containers": [], "nodeName": "worker-2"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
                {"metadata": {"name": "p2"}, "spec": {"containers": []}, "status": {"phase": "Pending"}}]})),
    ];
    let standin = StandIn::start(script).await;
    let (code, out, err) = deployer(&standin, &["status"]).await;
    standin.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("resource cpu on pods (as a percentage of request): 93% / 70%"),
        "{out}"
    );
    assert!(
        out.contains("min replicas 3, max replicas 10; current 4, desired 6"),
        "{out}"
    );
    assert!(
        out.contains("event SuccessfulRescale: New size: 6"),
        "{out}"
    );
    assert!(
        out.contains("p1 Running ready on worker-2") && out.contains("p2 Pending on <unscheduled>"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_invalid_object_and_missing_node_are_explained() {
    // A kubeconfig pointing at a port nobody listens on.
    let standin = StandIn::start(vec![]).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = std::fs::read_to_string(&standin.kubeconfig)
        .unwrap()
        .replace(&standin.url, &format!("http://127.0.0.1:{port}"));
    let dead = standin.kubeconfig.with_file_name("dead-kubeconfig");
    std::fs::write(&dead, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("--kubeconfig")
        .arg(&dead)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains(&format!(
            "cannot reach the Kubernetes API server at http://127.0.0.1:{port}"
        )) && err.contains("kubectl cluster-info"),
        "{err}"
    );
    standin.finish();

    let options = RenderOptions::default();
    let objs = objects(&options);
    let mut script = preflight();
    script.push(no_scaled_object());
    script.push(Expect::get(&objs[0].0).respond(404, not_found("namespace")));
    let mut invalid = status(422, "Invalid", "Namespace \"torchship\" is invalid");
    invalid["details"] = json!({"name": "torchship", "kind": "Namespace", "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: \"x\": a lowercase RFC 1123 label", "field": "metadata.labels"}]});
    script.push(Expect::apply(&objs[0].0, MANAGER).respond(422, invalid));
    let standin = StandIn::start(script).await;
    let (code, _, err) = deployer(&standin, &["apply"]).await;
    standin.finish();
    assert_eq!(code, 2);
    assert!(
        err.contains("rejected the object while trying to apply Namespace torchship (422 Invalid)"),
        "{err}"
    );
    assert!(err.contains("- metadata.labels: Invalid value"), "{err}");

    let mut script = preflight();
    script.push(Expect::get("/api/v1/nodes/nope").respond(404, not_found("node nope")));
    let standin = StandIn::start(script).await;
    let (code, _, err) = deployer(&standin, &["apply", "--node", "nope"]).await;
    standin.finish();
    assert_eq!(code, 2);
    assert!(err.contains("node 'nope' does not exist"), "{err}");
}

/// A `--timeout` that would overflow the rollout deadline is refused at parse time, no panic.
#[test]
fn an_absurd_timeout_is_refused_without_a_panic() {
    for flag in ["--timeout", "--poll-interval"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
            .args(["status", flag, "18446744073709551615s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("longer than a year"), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}
