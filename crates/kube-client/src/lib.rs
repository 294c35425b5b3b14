//! What the deployer and the load tester share about Kubernetes, so neither keeps a copy:
//! - [`client`]: a client from `--kubeconfig`/`--context`, else kube's usual inference
//!   (KUBECONFIG, ~/.kube/config, then the in-cluster service account);
//! - [`resource_metric`]: an HPA's current and target utilisation of a resource (CPU), as
//!   `kubectl describe hpa` shows them;
//! - [`average_metric`]: its External or Pods metric (KEDA's queue metric) with the per-pod
//!   average it holds and the one it targets.

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

/// An External or Pods metric of an HPA with an average-value target (what a KEDA ScaledObject's
/// trigger becomes): its name and the per-pod values, current (absent until read) and target.
#[derive(Clone, Debug, PartialEq)]
pub struct AverageMetric {
    pub name: String,
    pub current: Option<f64>,
    pub target: Option<f64>,
}

/// The HPA's first External or Pods metric, as `kubectl describe hpa` shows it (`1500m / 2`).
pub fn average_metric(hpa: &HorizontalPodAutoscaler) -> Option<AverageMetric> {
    let spec = hpa.spec.as_ref()?.metrics.as_ref()?;
    let (name, target) = spec.iter().find_map(|m| {
        let (id, target) = match (&m.external, &m.pods) {
            (Some(e), _) => (&e.metric, &e.target),
            (None, Some(p)) => (&p.metric, &p.target),
            _ => return None,
        };
        let target = target.average_value.as_ref().or(target.value.as_ref());
        Some((id.name.clone(), target.and_then(|q| quantity(&q.0))))
    })?;
    let current = hpa
        .status
        .as_ref()
        .and_then(|s| s.current_metrics.as_ref())
        .into_iter()
        .flatten()
        .find_map(|m| match (&m.external, &m.pods) {
            (Some(e), _) if e.metric.name == name => {
                let c = &e.current;
                c.average_value.as_ref().or(c.value.as_ref())
            }
            (None, Some(p)) if p.metric.name == name => p.current.average_value.as_ref(),
            _ => None,
        })
        .and_then(|q| quantity(&q.0));
    Some(AverageMetric {
        name,
        current,
        target,
    })
}

/// A Kubernetes quantity as a number: `1500m` is 1.5, `2k` 2000, `1Ki` 1024.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        for (q, v) in [
            ("2", 2.0),
            ("1500m", 1.5),
            ("2k", 2000.0),
            ("1Ki", 1024.0),
            ("0", 0.0),
        ] {
            assert_eq!(quantity(q), Some(v), "{q}");
        }
        assert_eq!(quantity("abc"), None);
        assert_eq!(quantity("2x"), None);
    }

    #[test]
    fn a_keda_external_metric_reads_as_current_and_target_per_pod() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h"},
            "spec": {"maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": "d"},
                "metrics": [{"type": "External", "external": {
                    "metric": {"name": "s0-queue", "selector": {"matchLabels": {"scaledobject.keda.sh/name": "d"}}},
                    "target": {"type": "AverageValue", "averageValue": "2"}}}]},
            "status": {"desiredReplicas": 3, "currentMetrics": [{"type": "External", "external": {
                "metric": {"name": "s0-queue"}, "current": {"averageValue": "1333m"}}}]}
        }))
        .unwrap();
        let m = average_metric(&hpa).unwrap();
        assert_eq!(
            (m.name.as_str(), m.current, m.target),
            ("s0-queue", Some(1.333), Some(2.0))
        );
        let mut unknown = hpa.clone();
        unknown.status.as_mut().unwrap().current_metrics = None;
        assert_eq!(average_metric(&unknown).unwrap().current, None);
        let cpu_only: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "h"},
            "spec": {"maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": "d"},
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}]}
        }))
        .unwrap();
        assert_eq!(average_metric(&cpu_only), None);
    }

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
