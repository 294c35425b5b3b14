//! Before applying: is the cluster reachable (and which version), will the HPA get CPU metrics, does
//! the target node exist, are there enough GPUs and a device plugin, does every container request
//! CPU. Problems that would stop the rollout fail it; the rest are warnings.

use std::io::Write;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, ListParams};

use crate::cli::Options;
use crate::cluster::Cluster;
use crate::error::DeployError;
use crate::manifests::{Bundle, Profile, GPU_NODE_LABEL, GPU_RESOURCE};

/// Whether the resource metrics API the HPA reads (metrics.k8s.io, served by metrics-server) is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsApi {
    Available,
    /// Registered (an APIService exists) but not Available: metrics-server down or unreachable.
    Unavailable,
    /// No APIService v1beta1.metrics.k8s.io at all: metrics-server not installed.
    NotServed,
}

impl MetricsApi {
    /// What it means for the HPA and how to fix it, in one sentence.
    pub fn explain(self) -> String {
        let state = match self {
            MetricsApi::Available => return "metrics.k8s.io is served".into(),
            MetricsApi::Unavailable => "registered but not available (kubectl get apiservice v1beta1.metrics.k8s.io says why)",
            MetricsApi::NotServed => "not served",
        };
        format!("metrics.k8s.io is {state}: the HPA will show <unknown> targets and never scale. Install metrics-server (its Helm chart or release manifest; on kind, add --kubelet-insecure-tls to its args)")
    }
}

/// Reads APIService v1beta1.metrics.k8s.io and its Available condition.
pub async fn metrics_api(cluster: &Cluster) -> Result<MetricsApi, DeployError> {
    apiservice(cluster, "v1beta1.metrics.k8s.io").await
}

/// Reads APIService `name` (e.g. KEDA's v1beta1.external.metrics.k8s.io) and its Available
/// condition.
pub async fn apiservice(cluster: &Cluster, name: &str) -> Result<MetricsApi, DeployError> {
    let apiservices: Api<APIService> = Api::all(cluster.client.clone());
    let metrics = apiservices
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, &format!("read APIService {name}")))?;
    let Some(metrics) = metrics else {
        return Ok(MetricsApi::NotServed);
    };
    let available = metrics
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        });
    Ok(if available {
        MetricsApi::Available
    } else {
        MetricsApi::Unavailable
    })
}

/// Runs every check, printing one line each; fails with all blocking problems at once.
pub async fn run(
    cluster: &Cluster,
    bundle: &Bundle,
    opts: &Options,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let mut problems = Vec::new();
    let version = cluster
        .client
        .apiserver_version()
        .await
        .map_err(|e| cluster.explain(e, "read the server version"))?;
    let server = &cluster.server;
    let _ = writeln!(
        out,
        "preflight: cluster {} at {server}",
        version.git_version
    );
    match metrics_api(cluster).await? {
        MetricsApi::Available => {
            let _ = writeln!(
                out,
                "preflight: metrics.k8s.io is served (the HPA will see CPU use)"
            );
        }
        missing => {
            let _ = writeln!(out, "preflight: WARNING {}", missing.explain());
        }
    }
    if opts.custom_metrics {
        crate::queue::preflight(cluster, &mut problems, out).await?;
    }
    if let Some(name) = &opts.node {
        check_node(cluster, name, &mut problems, out).await?;
    }
    if opts.profile == Profile::Gpu {
        check_gpus(cluster, bundle, opts, &mut problems, out).await?;
        check_device_plugin(cluster, &mut problems).await?;
    }
    check_cpu_requests(bundle, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DeployError::Preflight(problems))
    }
}

/// The node to pin to exists.
async fn check_node(
    cluster: &Cluster,
    name: &str,
    problems: &mut Vec<String>,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node = nodes
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, &format!("read node {name}")))?;
    match node {
        Some(_) => {
            let _ = writeln!(out, "preflight: node {name} exists");
        }
        None => problems.push(format!(
            "node '{name}' does not exist (kubectl get nodes lists them)"
        )),
    }
    Ok(())
}

/// Enough GPUs allocatable on GPU nodes (only the pinned one, with --node) for minReplicas pods.
async fn check_gpus(
    cluster: &Cluster,
    bundle: &Bundle,
    opts: &Options,
    problems: &mut Vec<String>,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let selector = format!("{}={}", GPU_NODE_LABEL.0, GPU_NODE_LABEL.1);
    let gpu_nodes = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| cluster.explain(e, "list GPU nodes"))?;
    let pinned = opts.node.as_deref();
    let allocatable = |n: &Node| {
        let quantity = n.status.as_ref()?.allocatable.as_ref()?.get(GPU_RESOURCE)?;
        quantity.0.parse::<i64>().ok()
    };
    let total: i64 = gpu_nodes
        .items
        .iter()
        .filter(|n| pinned.is_none_or(|p| n.metadata.name.as_deref() == Some(p)))
        .filter_map(allocatable)
        .sum();
    let min_replicas = bundle.hpa.spec.as_ref().and_then(|s| s.min_replicas);
    let min = min_replicas.unwrap_or(1) as i64;
    let need = min * opts.gpus_per_pod as i64;
    if total < need {
        let fit = total / opts.gpus_per_pod.max(1) as i64;
        problems.push(format!(
            "{total} {GPU_RESOURCE} allocatable on nodes labelled {selector}{}, but minReplicas {min} x {} per pod needs {need}: {} pod(s) would stay Pending",
            pinned.map(|p| format!(" (only node {p})")).unwrap_or_default(),
            opts.gpus_per_pod,
            min - fit
        ));
    } else {
        let _ = writeln!(out, "preflight: {total} GPUs allocatable for {need} needed");
    }
    Ok(())
}

/// Without NVIDIA's device plugin no node advertises GPUs.
async fn check_device_plugin(
    cluster: &Cluster,
    problems: &mut Vec<String>,
) -> Result<(), DeployError> {
    let daemonsets: Api<DaemonSet> = Api::all(cluster.client.clone());
    let list = daemonsets
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster.explain(e, "list daemonsets"))?;
    let plugin = list.items.into_iter().any(|d| {
        d.metadata
            .name
            .is_some_and(|n| n.contains("nvidia-device-plugin"))
    });
    if !plugin {
        problems.push("no NVIDIA device plugin DaemonSet found: nodes will not advertise nvidia.com/gpu. Install it (the NVIDIA GPU Operator or the k8s-device-plugin DaemonSet)".into());
    }
    Ok(())
}

/// The HPA computes utilisation against CPU requests: every container needs one.
fn check_cpu_requests(bundle: &Bundle, problems: &mut Vec<String>) {
    let containers = bundle.pod_spec().map(|p| p.containers.as_slice());
    for c in containers.unwrap_or_default() {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if !requests.is_some_and(|r| r.contains_key("cpu")) {
            problems.push(format!("container {} has no CPU request: the HPA computes utilisation against requests and would show <unknown>", c.name));
        }
    }
}
