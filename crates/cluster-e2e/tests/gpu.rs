//! `deployer apply --profile gpu` against the real scheduler: kwok-gpu-1 advertises 2
//! `nvidia.com/gpu` and carries the `nvidia.com/gpu=present:NoSchedule` taint of GPU node pools.
//! Preflight refuses a minReplicas the GPUs cannot hold; when the GPUs are taken by someone else,
//! the rollout diagnosis quotes the scheduler's real `Insufficient nvidia.com/gpu`; the pods land on
//! the GPU node only.

use std::time::Duration;

use cluster_e2e::{clean, env, eventually, kubectl, kubectl_ok, lock, pods, SERVER_PODS};

const NS: &str = "ts-gpu";
const GPU_NODE: &str = "kwok-gpu-1";

/// Another team's pod holding one of the node's two GPUs.
const OTHER_JOB: &str = r#"{
  "apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "other-team-training", "namespace": "default"},
  "spec": {
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "containers": [{"name": "train", "image": "example.com/train:1",
      "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
  }
}"#;

#[test]
fn gpu_pods_land_on_the_gpu_node_and_a_shortage_is_explained() {
    let Some(env) = env() else { return };
    let _turn = lock();
    clean(NS);

    // 3 pods x 1 GPU on 2 GPUs: refused before anything is applied.
    let refused = env.deployer(NS, &["apply", "--profile", "gpu"]);
    assert_ne!(
        refused.code,
        0,
        "preflight must refuse:\n{}",
        refused.text()
    );
    let text = refused.text();
    assert!(text.contains("2 nvidia.com/gpu allocatable"), "{text}");
    assert!(text.contains("1 pod(s) would stay Pending"), "{text}");
    assert!(
        kubectl(&["get", "namespace", NS]).code != 0,
        "preflight failed, yet namespace {NS} was created"
    );

    // One GPU taken by another workload: the second pod cannot be placed.
    let path = std::env::temp_dir().join("torchship-other-gpu-job.json");
    std::fs::write(&path, OTHER_JOB).unwrap();
    kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
    let stuck = env.deployer(
        NS,
        &[
            "apply",
            "--profile",
            "gpu",
            "--min-replicas",
            "2",
            "--timeout",
            "45s",
        ],
    );
    let text = stuck.text();
    assert_ne!(
        stuck.code, 0,
        "the rollout cannot complete with one free GPU:\n{text}"
    );
    assert!(
        text.contains("Insufficient nvidia.com/gpu") && text.contains("not enough free GPUs"),
        "the diagnosis quotes the scheduler and says what to do:\n{text}"
    );

    // The GPU freed: both pods run, on the GPU node only.
    kubectl_ok(&[
        "delete",
        "pod",
        "other-team-training",
        "-n",
        "default",
        "--wait=false",
    ]);
    let placed = eventually("2 GPU pods Running", Duration::from_secs(90), || {
        let p = pods(NS, SERVER_PODS);
        (p.len() == 2
            && p.iter()
                .all(|(_, _, phase, ready)| phase == "Running" && *ready))
        .then_some(p)
    });
    for (name, node, _, _) in &placed {
        assert_eq!(node, GPU_NODE, "GPU pod {name} is not on the GPU node");
    }
    env.deployer(NS, &["delete", "--profile", "gpu"])
        .expect_code(0, "delete");
}
