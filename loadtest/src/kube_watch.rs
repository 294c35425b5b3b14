//! `--watch-hpa`: kube-rs watchers on the HorizontalPodAutoscaler and on the Deployment it scales
//! (found from the HPA's `scaleTargetRef`), recording every change of their status on the load's
//! time axis (seconds since the load started), so one report shows load, latency and replicas.
//!
//! The watcher lists, then watches, and re-lists after disconnects with backoff; its errors (RBAC,
//! a missing HPA) are kept in the timeline rather than ending the load test.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde::Serialize;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::LoadError;

/// The HPA's status at one moment.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct HpaPoint {
    /// Seconds since the load started.
    pub t: f64,
    pub current_replicas: i32,
    pub desired_replicas: i32,
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Average CPU utilisation of the pods, % of their CPU request (absent until metrics arrive).
    pub cpu_percent: Option<i32>,
    pub cpu_target_percent: Option<i32>,
    /// The HPA's External or Pods metric, if it scales on one (a KEDA ScaledObject's trigger,
    /// e.g. `s0-queue`), with its per-pod average now and the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_target: Option<f64>,
    /// Why the HPA cannot scale (AbleToScale or ScalingActive False, e.g. ScalingActive:
    /// FailedGetResourceMetric) or is held at a bound (ScalingLimited True), if so.
    pub blocked: Option<String>,
}

impl HpaPoint {
    /// What the HPA scales on, now against its target: `cpu 151%/70%`, or for an External/Pods
    /// metric `s0-prometheus 3.18/2.00` (per pod); `?` where it has no reading.
    pub fn reading(&self) -> String {
        match &self.metric {
            Some(name) => {
                let v = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.2}"));
                format!("{name} {}/{}", v(self.metric_value), v(self.metric_target))
            }
            None => {
                let pct = |v: Option<i32>| v.map_or("?".to_string(), |v| format!("{v}%"));
                format!(
                    "cpu {}/{}",
                    pct(self.cpu_percent),
                    pct(self.cpu_target_percent)
                )
            }
        }
    }
}

/// The Deployment's replica counts at one moment.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct DeploymentPoint {
    pub t: f64,
    pub replicas: i32,
    pub updated_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
}

/// Everything the watch saw.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Timeline {
    /// `namespace/name` of the HPA.
    pub hpa: String,
    /// `namespace/name` of the Deployment it scales, once known.
    pub deployment: Option<String>,
    pub hpa_timeline: Vec<HpaPoint>,
    pub deployment_timeline: Vec<DeploymentPoint>,
    /// Watch errors, each once, with the time first seen.
    pub errors: Vec<(f64, String)>,
}

impl Timeline {
    fn error(&mut self, t: f64, e: String) {
        if !self.errors.iter().any(|(_, seen)| *seen == e) {
            self.errors.push((t, e));
        }
    }
}

/// Connects with `--kubeconfig`/`--context`, else the usual inference (KUBECONFIG,
/// ~/.kube/config, then the in-cluster service account, as in the Job).
pub async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<Client, LoadError> {
    let (client, _server) = torchship_kube::client(kubeconfig, context)
        .await
        .map_err(LoadError::Kube)?;
    Ok(client)
}

/// The running watchers.
pub struct Watch {
    pub timeline: Arc<Mutex<Timeline>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

fn seconds_since(start: Instant) -> f64 {
    Instant::now()
        .checked_duration_since(start)
        .unwrap_or_default()
        .as_secs_f64()
}

fn hpa_point(h: &HorizontalPodAutoscaler, t: f64) -> HpaPoint {
    let spec = h.spec.as_ref();
    let status = h.status.as_ref();
    let (cpu, cpu_target) = torchship_kube::resource_metric(h, "cpu");
    let average = torchship_kube::average_metric(h);
    let blocked = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| match c.type_.as_str() {
            "ScalingLimited" => c.status == "True",
            _ => c.status == "False",
        })
        .map(|c| {
            format!(
                "{}: {}: {}",
                c.type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or("")
            )
        });
    HpaPoint {
        t,
        current_replicas: status.and_then(|s| s.current_replicas).unwrap_or(0),
        desired_replicas: status.map(|s| s.desired_replicas).unwrap_or(0),
        min_replicas: spec.and_then(|s| s.min_replicas).unwrap_or(1),
        max_replicas: spec.map(|s| s.max_replicas).unwrap_or(0),
        cpu_percent: cpu,
        cpu_target_percent: cpu_target,
        metric: average.as_ref().map(|m| m.name.clone()),
        metric_value: average.as_ref().and_then(|m| m.current),
        metric_target: average.as_ref().and_then(|m| m.target),
        blocked,
    }
}

fn deployment_point(d: &Deployment, t: f64) -> DeploymentPoint {
    let s = d.status.clone().unwrap_or_default();
    DeploymentPoint {
        t,
        replicas: s.replicas.unwrap_or(0),
        updated_replicas: s.updated_replicas.unwrap_or(0),
        ready_replicas: s.ready_replicas.unwrap_or(0),
        available_replicas: s.available_replicas.unwrap_or(0),
    }
}

/// Appends `p` unless it equals the last point apart from its time.
fn push_change<P: Clone + PartialEq>(v: &mut Vec<P>, p: P, untimed: impl Fn(&P) -> P) {
    if v.last().map(&untimed) != Some(untimed(&p)) {
        v.push(p);
    }
}

impl Watch {
    /// Starts watching HPA `name` in `namespace`; times count from `start`.
    pub fn start(client: Client, namespace: &str, name: &str, start: Instant) -> Watch {
        let timeline = Arc::new(Mutex::new(Timeline {
            hpa: format!("{namespace}/{name}"),
            ..Default::default()
        }));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let hpa_task = tokio::spawn(watch_hpa(
            client,
            namespace.to_string(),
            name.to_string(),
            start,
            timeline.clone(),
            tasks.clone(),
        ));
        tasks.lock().unwrap().push(hpa_task.abort_handle());
        Watch { timeline, tasks }
    }

    /// Stops the watchers and returns what they saw.
    pub fn stop(self) -> Timeline {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        self.timeline.lock().unwrap().clone()
    }
}

async fn watch_hpa(
    client: Client,
    namespace: String,
    name: String,
    start: Instant,
    timeline: Arc<Mutex<Timeline>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
) {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let (mut seen, mut target_watched) = (false, false);
    while let Some(event) = events.next().await {
        let t = seconds_since(start);
        match event {
            Ok(Event::Apply(h) | Event::InitApply(h)) => {
                seen = true;
                push_change(
                    &mut timeline.lock().unwrap().hpa_timeline,
                    hpa_point(&h, t),
                    |p| HpaPoint {
                        t: 0.0,
                        ..p.clone()
                    },
                );
                let target = h.spec.as_ref().map(|s| &s.scale_target_ref);
                if let Some(target) = target.filter(|r| r.kind == "Deployment") {
                    if !target_watched {
                        target_watched = true;
                        timeline.lock().unwrap().deployment =
                            Some(format!("{namespace}/{}", target.name));
                        let task = tokio::spawn(watch_deployment(
                            client.clone(),
                            namespace.clone(),
                            target.name.clone(),
                            start,
                            timeline.clone(),
                        ));
                        tasks.lock().unwrap().push(task.abort_handle());
                    }
                }
            }
            Ok(Event::InitDone) if !seen => timeline.lock().unwrap().error(
                t,
                format!("no HorizontalPodAutoscaler named {name} in namespace {namespace}"),
            ),
            Ok(Event::Delete(_)) => timeline
                .lock()
                .unwrap()
                .error(t, format!("the HPA {namespace}/{name} was deleted")),
            Ok(_) => {}
            Err(e) => timeline
                .lock()
                .unwrap()
                .error(t, format!("watching the HPA: {e}")),
        }
    }
}

async fn watch_deployment(
    client: Client,
    namespace: String,
    name: String,
    start: Instant,
    timeline: Arc<Mutex<Timeline>>,
) {
    let api: Api<Deployment> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let t = seconds_since(start);
        match event {
            Ok(Event::Apply(d) | Event::InitApply(d)) => push_change(
                &mut timeline.lock().unwrap().deployment_timeline,
                deployment_point(&d, t),
                |p| DeploymentPoint {
                    t: 0.0,
                    ..p.clone()
                },
            ),
            Ok(_) => {}
            Err(e) => timeline
                .lock()
                .unwrap()
                .error(t, format!("watching the Deployment: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keda_hpa_reads_as_its_external_metric_not_cpu() {
        let h: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "s"}, "minReplicas": 3, "maxReplicas": 6,
                "metrics": [{"type": "External", "external": {"metric": {"name": "s0-prometheus"},
                    "target": {"type": "AverageValue", "averageValue": "2"}}}]},
            "status": {"currentReplicas": 3, "desiredReplicas": 5,
                "currentMetrics": [{"type": "External", "external": {"metric": {"name": "s0-prometheus"},
                    "current": {"averageValue": "3182m"}}}]}
        }))
        .unwrap();
        let p = hpa_point(&h, 3.0);
        assert_eq!((p.cpu_percent, p.cpu_target_percent), (None, None));
        assert_eq!(p.metric.as_deref(), Some("s0-prometheus"));
        assert_eq!((p.metric_value, p.metric_target), (Some(3.182), Some(2.0)));
    }

    #[test]
    fn an_hpa_status_reads_replicas_cpu_and_why_it_is_stuck() {
        let h: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "s"}, "minReplicas": 3, "maxReplicas": 10,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
            "status": {"currentReplicas": 3, "desiredReplicas": 7,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 151}}}],
                "conditions": [{"type": "AbleToScale", "status": "True"}, {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange"},
                    {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "missing request for cpu"}]}
        }))
        .unwrap();
        let p = hpa_point(&h, 1.5);
        assert_eq!(
            (
                p.current_replicas,
                p.desired_replicas,
                p.min_replicas,
                p.max_replicas
            ),
            (3, 7, 3, 10)
        );
        assert_eq!((p.cpu_percent, p.cpu_target_percent), (Some(151), Some(70)));
        assert_eq!(
            p.blocked.as_deref(),
            Some("ScalingActive: FailedGetResourceMetric: missing request for cpu")
        );
        let mut v = vec![p.clone()];
        push_change(
            &mut v,
            HpaPoint {
                t: 2.0,
                ..p.clone()
            },
            |p| HpaPoint {
                t: 0.0,
                ..p.clone()
            },
        );
        assert_eq!(v.len(), 1, "same status at a later time is not a change");
    }
}
