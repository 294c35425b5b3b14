//! What the deployer and the load tester share about Kubernetes, so neither keeps a copy:
//! - [`client`]: a client from `--kubeconfig`/`--context`, else kube's usual inference
//!   (KUBECONFIG, ~/.kube/config, then the in-cluster service account);
//! - [`resource_metric`]: an HPA's current and target utilisation of a resource (CPU), as
//!   `kubectl describe hpa` shows them.

use std::path::Path;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client and the API server's URL. The error is kube's own message (the callers wrap it).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(Client, String), String> {
    let config = if kubeconfig.is_some() || context.is_some() {
        let file = match kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| e.to_string())?;
        let options = KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| e.to_string())?
    } else {
        Config::infer().await.map_err(|e| e.to_string())?
    };
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    Ok((client, server))
}

/// The HPA's utilisation of `resource` (e.g. "cpu"), % of the pods' requests: (current, target).
/// Current is `None` until the HPA has a reading (`<unknown>` in kubectl).
pub fn resource_metric(
    hpa: &HorizontalPodAutoscaler,
    resource: &str,
) -> (Option<i32>, Option<i32>) {
    let target = hpa
        .spec
        .as_ref()
        .and_then(|s| s.metrics.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|m| m.resource.as_ref())
        .find(|r| r.name == resource)
        .and_then(|r| r.target.average_utilization);
    let current = hpa
        .status
        .as_ref()
        .and_then(|s| s.current_metrics.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|m| m.resource.as_ref())
        .find(|r| r.name == resource)
        .and_then(|r| r.current.average_utilization);
    (current, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_target_cpu_as_kubectl_shows_them() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h"},
            "spec": {"maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": "d"},
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}]},
            "status": {"desiredReplicas": 3, "currentMetrics": [{"type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": 93}}}]}
        }))
        .unwrap();
        assert_eq!(resource_metric(&hpa, "cpu"), (Some(93), Some(70)));
        assert_eq!(resource_metric(&hpa, "memory"), (None, None));
        let mut unknown = hpa.clone();
        unknown.status.as_mut().unwrap().current_metrics = None;
        assert_eq!(resource_metric(&unknown, "cpu"), (None, Some(70)));
    }
}
