//! `--custom-metrics`: the HPA scales on the server's queue through KEDA instead of on CPU. The
//! ScaledObject is `k8s/overlays/custom-metrics/scaledobject.yaml` (embedded, as `k8s/base` is),
//! given the HPA's replica bounds and behaviour (so `--min-replicas`, `--scale-down-window`, ...
//! act on it as on the HPA), the namespace in its query, `--prometheus-url` and `--queue-target`.
//! KEDA's operator then owns the HPA of the same name; `status` reads it and explains a broken
//! pipeline from the APIService and the ScaledObject's own conditions.

use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PropagationPolicy};
use kube::core::ApiResource;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::DeployError;
use crate::manifests::ManifestError;
use crate::preflight::{self, MetricsApi};

const FILE: &str = "k8s/overlays/custom-metrics/scaledobject.yaml";
const YAML: &str = include_str!("../../../k8s/overlays/custom-metrics/scaledobject.yaml");
/// KEDA's APIService for the External metrics the HPA reads.
pub const EXTERNAL_METRICS_API: &str = "v1beta1.external.metrics.k8s.io";
/// The namespace the query is written for in the YAML (k8s/base's).
const BASE_NAMESPACE_MATCHER: &str = "namespace=\"torchship\"";

/// KEDA's ScaledObject resource (keda.sh/v1alpha1).
pub fn resource() -> ApiResource {
    ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    }
}

/// The queue autoscaler's settings (`--prometheus-url`, `--queue-target`); `None` keeps the YAML's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueOptions {
    pub prometheus_url: Option<String>,
    pub target: Option<String>,
}

fn options_error(message: String) -> ManifestError {
    ManifestError::Options(message)
}

/// The ScaledObject for `hpa` (already rendered: namespace, replicas, behaviour) in `namespace`.
pub fn scaled_object(
    hpa: &HorizontalPodAutoscaler,
    namespace: &str,
    o: &QueueOptions,
) -> Result<Value, ManifestError> {
    let mut so: Value = serde_saphyr::from_str(YAML).map_err(|e| ManifestError::Parse {
        file: FILE,
        message: e.to_string(),
    })?;
    so["metadata"]["namespace"] = namespace.into();
    let spec = hpa.spec.clone().unwrap_or_default();
    so["spec"]["minReplicaCount"] = spec.min_replicas.unwrap_or(1).into();
    so["spec"]["maxReplicaCount"] = spec.max_replicas.into();
    if let Some(b) = &spec.behavior {
        so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] =
            serde_json::to_value(b).expect("k8s-openapi objects serialise");
    }
    let meta = &mut so["spec"]["triggers"][0]["metadata"];
    let query = meta["query"].as_str().unwrap_or_default();
    let matcher = format!("namespace=\"{namespace}\"");
    meta["query"] = query.replace(BASE_NAMESPACE_MATCHER, &matcher).into();
    if let Some(url) = &o.prometheus_url {
        meta["serverAddress"] = checked_url(url)?.into();
    }
    if let Some(t) = &o.target {
        meta["threshold"] = checked_target(t)?.into();
    }
    Ok(so)
}

fn checked_url(url: &str) -> Result<String, ManifestError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url.into()),
        _ => Err(options_error(format!(
            "--prometheus-url '{url}' is not an http:// or https:// URL of Prometheus (e.g. http://prometheus.monitoring.svc:9090)"
        ))),
    }
}

fn checked_target(t: &str) -> Result<String, ManifestError> {
    match t.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 10_000.0 => Ok(t.trim().into()),
        _ => Err(options_error(format!(
            "--queue-target '{t}' is not a mean queue per pod in (0, 10000] (e.g. 2 or 0.5)"
        ))),
    }
}

/// Preflight: KEDA's ScaledObject API must be served (else the apply fails), and its metrics API
/// should be available (else the HPA cannot read the queue).
pub async fn preflight(
    cluster: &Cluster,
    problems: &mut Vec<String>,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let served = match cluster
        .client
        .list_api_group_resources("keda.sh/v1alpha1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "scaledobjects"),
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(e) => return Err(cluster.explain(e, "discover keda.sh/v1alpha1")),
    };
    if !served {
        problems.push("--custom-metrics needs KEDA: keda.sh/v1alpha1 ScaledObject is not served. Install KEDA (its Helm chart or release manifest) and a Prometheus that scrapes the pods (k8s/monitoring/prometheus.yml)".into());
        return Ok(());
    }
    let state = preflight::apiservice(cluster, EXTERNAL_METRICS_API).await?;
    let line = match state {
        MetricsApi::Available => "preflight: KEDA is installed and external.metrics.k8s.io is served (the HPA will see the queue)".to_string(),
        missing => format!("preflight: WARNING {}", explain_external(missing)),
    };
    let _ = writeln!(out, "{line}");
    Ok(())
}

/// What a missing External metrics API means for the queue HPA.
pub fn explain_external(state: MetricsApi) -> String {
    match state {
        MetricsApi::Available => format!("{EXTERNAL_METRICS_API} is available"),
        MetricsApi::Unavailable => format!("{EXTERNAL_METRICS_API} is registered but not available (KEDA's metrics API server is down or unreachable; kubectl get apiservice {EXTERNAL_METRICS_API} says why): the HPA cannot read the queue and keeps its replicas"),
        MetricsApi::NotServed => format!("{EXTERNAL_METRICS_API} is not served: KEDA's metrics API server is not installed, and no HPA can read the queue"),
    }
}

/// What `status` learnt of the ScaledObject: the object, and KEDA's last error in its own words
/// (the newest KEDAScalerFailed event: the Ready condition only says that a trigger fails).
pub struct Seen {
    pub object: Option<DynamicObject>,
    pub last_failure: Option<String>,
}

/// The ScaledObject's conditions (Ready, Active, Fallback, Paused), one line each, and its last
/// events, for `status`.
pub async fn describe(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    out: &mut impl Write,
) -> Result<Seen, DeployError> {
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), ns, &resource());
    let so = match api.get_opt(name).await {
        Ok(so) => so,
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => return Err(cluster.explain(e, &format!("read ScaledObject {name}"))),
    };
    let Some(so) = so else {
        let _ = writeln!(
            out,
            "ScaledObject {ns}/{name}: not found (KEDA never saw it: apply with --custom-metrics)"
        );
        return Ok(Seen {
            object: None,
            last_failure: None,
        });
    };
    let _ = writeln!(out, "ScaledObject {ns}/{name} (KEDA):");
    for c in conditions(&so.data) {
        let _ = writeln!(out, "  condition {} = {} ({}): {}", c[0], c[1], c[2], c[3]);
    }
    let events = events(cluster, ns, name).await?;
    for e in events.iter().rev().take(3) {
        let _ = writeln!(
            out,
            "  event {} ({}): {}",
            e.reason,
            age(e.age_s),
            e.message
        );
    }
    let last_failure = events
        .iter()
        .rev()
        .find(|e| e.reason == "KEDAScalerFailed")
        .map(|e| format!("its last error, {} ago: {}", age(e.age_s), e.message));
    Ok(Seen {
        object: Some(so),
        last_failure,
    })
}

/// One event of the ScaledObject, with its age (seconds) where it has a time.
struct SoEvent {
    reason: String,
    message: String,
    age_s: Option<i64>,
}

fn age(s: Option<i64>) -> String {
    s.map_or("?".into(), |s| format!("{}s", s.max(0)))
}

/// The ScaledObject's events, oldest first. KEDA records them through events.k8s.io, so the
/// core view has eventTime rather than lastTimestamp; an old error (a trigger that failed once,
/// before the pods were scraped) says so by its age.
async fn events(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<SoEvent>, DeployError> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let fields = format!("involvedObject.name={name},involvedObject.kind=ScaledObject");
    let mut list = api
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(|e| cluster.explain(e, "list the ScaledObject's events"))?
        .items;
    let when = |e: &Event| {
        let t = e.event_time.as_ref().map(|t| t.0);
        let t = t.or(e.last_timestamp.as_ref().map(|t| t.0));
        t.or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    list.sort_by_key(when);
    let now = k8s_openapi::jiff::Timestamp::now();
    Ok(list
        .into_iter()
        .map(|e| SoEvent {
            age_s: when(&e).map(|t| now.as_second() - t.as_second()),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        })
        .collect())
}

/// [type, status, reason, message] of each condition in an object's status.
fn conditions(data: &Value) -> Vec<[String; 4]> {
    let list = data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let s = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    list.iter()
        .map(|c| {
            [
                s(c, "type"),
                s(c, "status"),
                s(c, "reason"),
                s(c, "message"),
            ]
        })
        .collect()
}

/// Why the HPA cannot read its External metric, from the APIService and the ScaledObject.
pub fn explain_failed_metric(state: MetricsApi, seen: &Seen) -> String {
    if state != MetricsApi::Available {
        return format!("the HPA gets no queue metric: {}", explain_external(state));
    }
    let not_ready = seen
        .object
        .as_ref()
        .map(|so| conditions(&so.data))
        .unwrap_or_default()
        .into_iter()
        .find(|c| c[0] == "Ready" && c[1] != "True");
    let why = match (&seen.last_failure, not_ready) {
        (Some(failure), _) => Some(format!("KEDA's trigger fails ({failure})")),
        (None, Some(c)) => Some(format!("KEDA's trigger fails ({}: {})", c[2], c[3])),
        (None, None) => None,
    };
    match why {
        Some(why) => format!("the HPA gets no queue metric: {why}. Is Prometheus up and at the trigger's serverAddress, and does it scrape the pods (k8s/monitoring/prometheus.yml)? The HPA keeps its replicas until the metric is back"),
        None => "the HPA gets no queue metric although KEDA's metrics API is available: the query may have no series yet (Prometheus scrapes no pod of this namespace, or the pods are too new); the HPA keeps its replicas meanwhile".into(),
    }
}

/// Without `--custom-metrics`: a ScaledObject left by an earlier `--custom-metrics` apply would
/// keep rewriting the HPA. It is deleted (foreground, so KEDA's HPA goes with it) and awaited, and
/// the plain HPA is applied afresh.
pub async fn remove_leftover(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), ns, &resource());
    let exists = |r: Result<Option<DynamicObject>, kube::Error>| match r {
        Ok(so) => Ok(so.is_some()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(cluster.explain(e, &format!("read ScaledObject {name}"))),
    };
    let first = match api.get_opt(name).await {
        // No KEDA (404), or a role without keda.sh (403): there is nothing of ours to remove.
        Err(kube::Error::Api(e)) if e.code == 403 => return Ok(()),
        r => exists(r)?,
    };
    if !first {
        return Ok(());
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    api.delete(name, &dp)
        .await
        .map_err(|e| cluster.explain(e, &format!("delete ScaledObject {name}")))?;
    let _ = writeln!(
        out,
        "scaledobject.keda.sh/{name} deleted (scaling on CPU again; KEDA's HPA goes with it)"
    );
    let start = tokio::time::Instant::now();
    while exists(api.get_opt(name).await)? {
        if start.elapsed() > timeout {
            return Err(DeployError::Preflight(vec![format!("ScaledObject {ns}/{name} still exists after {}s: KEDA's finalizer has not run (is the KEDA operator up?)", timeout.as_secs())]));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::{Bundle, RenderOptions};

    fn queue(o: QueueOptions, namespace: &str) -> Result<Value, ManifestError> {
        let b = Bundle::render(&RenderOptions {
            namespace: namespace.into(),
            min_replicas: Some(2),
            max_replicas: Some(7),
            ..Default::default()
        })
        .unwrap();
        scaled_object(&b.hpa, namespace, &o)
    }

    #[test]
    fn the_scaled_object_takes_the_hpas_bounds_and_the_options() {
        let o = QueueOptions {
            prometheus_url: Some("http://127.0.0.1:9090/".into()),
            target: Some("1.5".into()),
        };
        let so = queue(o, "ml").unwrap();
        assert_eq!(so["metadata"]["namespace"], "ml");
        assert_eq!(
            (
                so["spec"]["minReplicaCount"].clone(),
                so["spec"]["maxReplicaCount"].clone()
            ),
            (2.into(), 7.into())
        );
        let meta = &so["spec"]["triggers"][0]["metadata"];
        assert_eq!(meta["serverAddress"], "http://127.0.0.1:9090");
        assert_eq!(meta["threshold"], "1.5");
        assert!(
            meta["query"].as_str().unwrap().contains("namespace=\"ml\""),
            "{meta}"
        );
        let hpa_config = &so["spec"]["advanced"]["horizontalPodAutoscalerConfig"];
        assert_eq!(hpa_config["name"], "torchship-server");
        assert_eq!(
            hpa_config["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            300
        );
    }

    #[test]
    fn bad_urls_and_targets_are_refused_with_the_flag_named() {
        for (url, target) in [
            ("prometheus:9090", "2"),
            ("http://", "2"),
            ("http://p:9090", "0"),
            ("http://p:9090", "-1"),
            ("http://p:9090", "many"),
            ("http://p:9090", "NaN"),
        ] {
            let o = QueueOptions {
                prometheus_url: Some(url.into()),
                target: Some(target.into()),
            };
            let e = queue(o, "ml").unwrap_err().to_string();
            assert!(
                e.contains("--prometheus-url") || e.contains("--queue-target"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_failing_trigger_is_explained_with_kedas_own_words() {
        let so: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ScaledObjectCheckFailed",
                "message": "dial tcp 127.0.0.1:9090: connect: connection refused"}]}
        }))
        .unwrap();
        let seen = |last_failure: Option<&str>| Seen {
            object: Some(so.clone()),
            last_failure: last_failure.map(str::to_string),
        };
        let why = explain_failed_metric(MetricsApi::Available, &seen(None));
        assert!(
            why.contains("connection refused") && why.contains("Prometheus"),
            "{why}"
        );
        // KEDA's event, when there is one, says more than the condition.
        let empty = "its last error, 2s ago: prometheus metrics 'prometheus' target may be lost, the result is empty";
        let why = explain_failed_metric(MetricsApi::Available, &seen(Some(empty)));
        assert!(why.contains("the result is empty"), "{why}");
        let why = explain_failed_metric(MetricsApi::Unavailable, &seen(None));
        assert!(
            why.contains(EXTERNAL_METRICS_API) && why.contains("not available"),
            "{why}"
        );
        let nothing = Seen {
            object: None,
            last_failure: None,
        };
        let why = explain_failed_metric(MetricsApi::Available, &nothing);
        assert!(why.contains("no series"), "{why}");
    }
}
