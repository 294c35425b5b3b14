//! The scheduler's `FailedScheduling` message ("0/3 nodes are available: ...") turned into advice,
//! one line per cause, and the taints a pod does not tolerate, read from the nodes: since
//! Kubernetes 1.36 the message says only "node(s) had untolerated taint(s)", without the taint
//! (older releases wrote "had untolerated taint {key: value}").

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

/// Translates the scheduler's message into advice, one line per cause. `untolerated` names the
/// taints the pod does not tolerate (see [`untolerated_taints`]), used where the message does not.
pub fn explain(message: &str, untolerated: &[String]) -> Vec<String> {
    // "0/3 nodes are available: <causes>. <what preemption or DRA made of it>": the causes end at
    // the first ". " (1.36 adds "no new claims to deallocate" there, earlier releases "preemption: ...").
    let message = message.split(". ").next().unwrap_or(message);
    let causes = message
        .split_once("available:")
        .map(|(_, rest)| rest)
        .unwrap_or(message);
    causes
        .split(", ")
        .map(|c| c.trim().trim_end_matches('.'))
        .filter(|c| !c.is_empty() && !c.starts_with("preemption:"))
        .map(|cause| advice(cause, untolerated))
        .collect()
}

fn advice(cause: &str, untolerated: &[String]) -> String {
    if cause.contains("untolerated taint") {
        let named = cause
            .split_once('{')
            .map(|(_, t)| format!("{{{t}"))
            .unwrap_or_else(|| untolerated.join(", "));
        let named = if named.is_empty() {
            "(see kubectl describe nodes)".into()
        } else {
            named
        };
        format!("{cause}: the pods do not tolerate the taint {named}. Deploy with --node NAME (it adds the role=pytorch toleration), or remove the taint: kubectl taint node NAME <key>-")
    } else if cause.contains("didn't match Pod's node affinity/selector") {
        format!("{cause}: no node carries the labels the pods select (role=pytorch when pinned, nvidia.com/gpu.present=true for GPUs). Label the target node (deployer --node NAME does it), or deploy without --node")
    } else if cause.contains("Insufficient nvidia.com/gpu") {
        format!("{cause}: not enough free GPUs. Is the NVIDIA device plugin running (kubectl get ds -A | grep nvidia)? Lower --gpus-per-pod or --min-replicas, or add GPU nodes")
    } else if cause.contains("Insufficient cpu") || cause.contains("Insufficient memory") {
        format!("{cause}: the nodes lack free CPU or memory for the pods' requests. Add nodes, lower --min-replicas, or lower the requests in k8s/base/deployment.yaml")
    } else {
        cause.to_string()
    }
}

/// The scheduling taints (NoSchedule, NoExecute) of the given nodes that none of the pod's
/// tolerations matches, as `node: key=value:Effect`, in node order.
pub fn untolerated_taints(pod: &Pod, nodes: &[Node]) -> Vec<String> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    nodes
        .iter()
        .flat_map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            n.spec
                .iter()
                .flat_map(|s| s.taints.iter().flatten())
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
                .map(move |t| {
                    let value = t
                        .value
                        .as_deref()
                        .map(|v| format!("={v}"))
                        .unwrap_or_default();
                    format!("{name}: {}{value}:{}", t.key, t.effect)
                })
        })
        .collect()
}

/// The API's matching rule: an empty key with Exists matches every taint; otherwise the key must
/// match, and the value too unless the operator is Exists; an empty effect matches every effect.
fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let exists = tol.operator.as_deref() == Some("Exists");
    let key = tol.key.as_deref().unwrap_or_default();
    let key_ok = (key.is_empty() && exists) || key == taint.key;
    let value_ok = exists
        || tol.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default();
    let effect = tol.effect.as_deref().unwrap_or_default();
    key_ok && value_ok && (effect.is_empty() || effect == taint.effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduler_messages_become_advice() {
        let msg = "0/3 nodes are available: 1 node(s) had untolerated taint {role: pytorch}, 1 node(s) didn't match Pod's node affinity/selector, 1 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
        let lines = explain(msg, &[]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].contains("do not tolerate the taint {role: pytorch}")
                && lines[0].contains("--node")
        );
        assert!(lines[1].contains("Label the target node"));
        assert!(lines[2].contains("NVIDIA device plugin"));
        assert!(
            explain("0/2 nodes are available: 2 Insufficient cpu.", &[])[0]
                .contains("lack free CPU")
        );
    }

    #[test]
    fn a_message_without_the_taint_names_the_nodes_taints() {
        // Kubernetes 1.36's wording, as its scheduler sends it.
        let msg = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
        let untolerated = vec!["kwok-cpu-1: example.com/maintenance=true:NoSchedule".to_string()];
        let lines = explain(msg, &untolerated);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].contains(
                "do not tolerate the taint kwok-cpu-1: example.com/maintenance=true:NoSchedule"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn untolerated_taints_follow_the_api_matching_rules() {
        let node = |name: &str, taints: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
                .unwrap()
        };
        let nodes = vec![
            node(
                "a",
                json!([{"key": "role", "value": "pytorch", "effect": "NoSchedule"},
                             {"key": "example.com/maintenance", "value": "true", "effect": "NoSchedule"},
                             {"key": "soft", "effect": "PreferNoSchedule"}]),
            ),
            node(
                "gpu",
                json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
            ),
        ];
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"spec": {"containers": [], "tolerations": tolerations}}))
                .unwrap()
        };
        let pinned = pod(
            json!([{"key": "role", "operator": "Equal", "value": "pytorch", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            untolerated_taints(&pinned, &nodes),
            [
                "a: example.com/maintenance=true:NoSchedule",
                "gpu: nvidia.com/gpu=present:NoSchedule"
            ]
        );
        let gpu = pod(json!([{"key": "nvidia.com/gpu", "operator": "Exists"}]));
        assert_eq!(
            untolerated_taints(&gpu, &nodes).len(),
            2,
            "role and maintenance on a"
        );
        let all = pod(json!([{"operator": "Exists"}]));
        assert!(untolerated_taints(&all, &nodes).is_empty());
        let wrong_value = pod(json!([{"key": "role", "operator": "Equal", "value": "other"}]));
        assert_eq!(untolerated_taints(&wrong_value, &nodes).len(), 3);
    }
}
