//! `deployer apply --node kwok-cpu-1` against the real control plane: the API server takes the
//! server-side apply bodies, the real scheduler puts every pod on the pinned node and keeps the
//! nginx demo off it, and the node keeps a taint someone else put there. Then `diff`,
//! `--dry-run=server` and `delete` against the live objects.

use std::time::Duration;

use cluster_e2e::{
    clean, env, eventually, kubectl, kubectl_json, kubectl_ok, lock, pods, taints, SERVER_PODS,
};

const NS: &str = "ts-pinned";
const NODE: &str = "kwok-cpu-1";
const FOREIGN: &str = "example.com/team=ml:PreferNoSchedule";

#[test]
fn pinned_apply_diff_dry_run_and_delete() {
    let Some(env) = env() else { return };
    let _turn = lock();
    clean(NS);
    kubectl_ok(&["taint", "node", NODE, FOREIGN, "--overwrite"]);

    let applied = env
        .deployer(NS, &["apply", "--node", NODE])
        .expect_code(0, "apply --node");
    let text = applied.text();
    for object in [
        format!("namespace/{NS} created"),
        "serviceaccount/torchship-server created".into(),
        "deployment.apps/torchship-server created".into(),
        "service/torchship-server created".into(),
        "horizontalpodautoscaler.autoscaling/torchship-server created".into(),
        "poddisruptionbudget.policy/torchship-server created".into(),
        "networkpolicy.networking.k8s.io/torchship-server created".into(),
        format!("node/{NODE} labelled role=pytorch and tainted role=pytorch:NoSchedule"),
    ] {
        assert!(
            text.contains(&object),
            "apply did not say {object:?}:\n{text}"
        );
    }
    assert!(
        text.contains("deployment torchship-server successfully rolled out (3 replicas available)"),
        "rollout not reported complete at the HPA's minimum:\n{text}"
    );

    let node = kubectl_json(&["get", "node", NODE]);
    assert_eq!(node["metadata"]["labels"]["role"], "pytorch", "node label");
    let t = taints(NODE);
    assert!(
        t.contains(&"role=pytorch:NoSchedule".to_string()),
        "our taint: {t:?}"
    );
    assert!(
        t.contains(&FOREIGN.to_string()),
        "the foreign taint was kept: {t:?}"
    );

    // The HPA (minReplicas 3) owns the replica count: 3 pods, every one Running, Ready, on NODE.
    let placed = eventually(
        "3 server pods Running and Ready",
        Duration::from_secs(90),
        || {
            let p = pods(NS, SERVER_PODS);
            (p.len() == 3
                && p.iter()
                    .all(|(_, _, phase, ready)| phase == "Running" && *ready))
            .then_some(p)
        },
    );
    for (name, node, _, _) in &placed {
        assert_eq!(node, NODE, "pod {name} scheduled off the pinned node");
    }

    // A workload without the toleration is kept off the tainted node by the real scheduler.
    kubectl_ok(&[
        "apply",
        "-f",
        env.root.join("k8s/demo/nginx.yaml").to_str().unwrap(),
    ]);
    let nginx = eventually(
        "4 nginx-demo pods scheduled",
        Duration::from_secs(60),
        || {
            let p = pods("default", "app.kubernetes.io/name=nginx-demo");
            (p.len() == 4 && p.iter().all(|(_, node, _, _)| !node.is_empty())).then_some(p)
        },
    );
    for (name, node, _, _) in &nginx {
        assert_ne!(node, NODE, "nginx pod {name} landed on the tainted node");
        assert_ne!(
            node, "kwok-gpu-1",
            "nginx pod {name} landed on the GPU node"
        );
    }
    kubectl_ok(&[
        "delete",
        "-f",
        env.root.join("k8s/demo/nginx.yaml").to_str().unwrap(),
        "--wait=false",
    ]);

    let again = env
        .deployer(NS, &["apply", "--node", NODE])
        .expect_code(0, "second apply");
    let text = again.text();
    assert!(
        text.contains("no changes: everything was already as rendered"),
        "{text}"
    );
    assert!(
        !text.contains(" created") && !text.contains(" configured"),
        "{text}"
    );

    // diff against the live objects: nothing, then a changed HPA bound (exit 1, as kubectl diff).
    env.deployer(NS, &["diff", "--node", NODE])
        .expect_code(0, "diff without changes");
    let diff = env
        .deployer(NS, &["diff", "--node", NODE, "--max-replicas", "7"])
        .expect_code(1, "diff");
    assert!(
        diff.text().contains("maxReplicas"),
        "diff names the field:\n{}",
        diff.text()
    );

    // --dry-run=server: the API server validates the change and stores nothing.
    let dry = env
        .deployer(
            NS,
            &[
                "apply",
                "--node",
                NODE,
                "--max-replicas",
                "7",
                "--dry-run",
                "server",
            ],
        )
        .expect_code(0, "server dry run");
    assert!(
        dry.text().contains("server dry run: nothing was stored"),
        "{}",
        dry.text()
    );
    let hpa = kubectl_json(&["get", "hpa", "torchship-server", "-n", NS]);
    assert_eq!(hpa["spec"]["maxReplicas"], 10, "dry run stored nothing");

    // delete: the objects, our label and taint go; the foreign taint stays.
    env.deployer(NS, &["delete", "--node", NODE])
        .expect_code(0, "delete");
    let left = kubectl(&["get", "deployment,service,hpa", "-n", NS, "-o", "name"]);
    assert!(
        left.stdout.trim().is_empty(),
        "objects left after delete: {}",
        left.stdout
    );
    let node = kubectl_json(&["get", "node", NODE]);
    assert!(
        node["metadata"]["labels"]["role"].is_null(),
        "label removed"
    );
    assert_eq!(
        taints(NODE),
        vec![FOREIGN.to_string()],
        "only the foreign taint is left"
    );
    kubectl_ok(&["taint", "node", NODE, "example.com/team:PreferNoSchedule-"]);
}
