//! Pods the real scheduler cannot place: the rollout diagnosis names each cause from the real
//! `FailedScheduling` event, and the taint at fault by name (Kubernetes 1.36's message says only
//! "had untolerated taint(s)", so the deployer reads the nodes' taints itself).

use cluster_e2e::{clean, env, kubectl_ok, lock};

const NS: &str = "ts-sched";
const NODE: &str = "kwok-cpu-1";

#[test]
fn an_untolerated_taint_and_an_affinity_mismatch_are_named() {
    let Some(env) = env() else { return };
    let _turn = lock();
    clean(NS);
    // Someone drains the pinned node for maintenance: our pods tolerate only role=pytorch.
    kubectl_ok(&[
        "taint",
        "node",
        NODE,
        "example.com/maintenance=true:NoSchedule",
        "--overwrite",
    ]);

    let stuck = env.deployer(NS, &["apply", "--node", NODE, "--timeout", "30s"]);
    let text = stuck.text();
    assert_ne!(stuck.code, 0, "no node can take the pods:\n{text}");
    assert!(text.contains("cannot be scheduled"), "{text}");
    assert!(
        text.contains("untolerated taint")
            && text.contains("example.com/maintenance=true:NoSchedule"),
        "the taint at fault is named:\n{text}"
    );
    assert!(
        text.contains("didn't match Pod's node affinity/selector")
            && text.contains("Label the target node"),
        "the affinity mismatch on the other nodes is explained:\n{text}"
    );

    env.deployer(NS, &["delete", "--node", NODE])
        .expect_code(0, "delete");
    kubectl_ok(&["taint", "node", NODE, "example.com/maintenance:NoSchedule-"]);
}
