//! `status`, `diff` and `delete`.

use std::io::Write;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::Value;

use crate::cli::Options;
use crate::cluster::{Cluster, FIELD_MANAGER};
use crate::error::DeployError;
use crate::manifests::Bundle;
use crate::objects::Object;
use crate::preflight::{self, MetricsApi};
use crate::queue;

/// Why an HPA has no CPU reading, from the state of the metrics API, and what to do.
fn explain_missing_metrics(api: MetricsApi) -> String {
    match api {
        MetricsApi::Available => "the HPA gets no CPU metrics although metrics.k8s.io is available: the pods may be too new for a reading (wait ~1 min), or have no CPU request".into(),
        missing => format!("the HPA gets no CPU metrics: {}", missing.explain()),
    }
}

/// What `kubectl describe hpa` shows, then the pods and their nodes.
pub async fn status(
    cluster: &Cluster,
    bundle: &Bundle,
    opts: &Options,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let ns = &opts.namespace;
    let name = bundle.hpa.name_any();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), ns);
    let hpa = hpas
        .get(&name)
        .await
        .map_err(|e| cluster.explain(e, &format!("read HPA {name}")))?;
    describe_hpa(&hpa, ns, out);
    if lacks_metrics(&hpa, "FailedGetResourceMetric") {
        let why = explain_missing_metrics(preflight::metrics_api(cluster).await?);
        let _ = writeln!(out, "  {why}");
    }
    if opts.custom_metrics {
        let seen = queue::describe(cluster, ns, &name, out).await?;
        if lacks_metrics(&hpa, "FailedGetExternalMetric") {
            let api = preflight::apiservice(cluster, queue::EXTERNAL_METRICS_API).await?;
            let _ = writeln!(out, "  {}", queue::explain_failed_metric(api, &seen));
        }
    }
    hpa_events(cluster, ns, &name, out).await?;
    pods(cluster, ns, out).await
}

/// The HPA's target, metrics (current / target), replica counts and conditions.
fn describe_hpa(hpa: &HorizontalPodAutoscaler, ns: &str, out: &mut impl Write) {
    let spec = hpa.spec.clone().unwrap_or_default();
    let st = hpa.status.clone().unwrap_or_default();
    let name = hpa.name_any();
    let target = &spec.scale_target_ref.name;
    let _ = writeln!(
        out,
        "HorizontalPodAutoscaler {ns}/{name} -> Deployment/{target}"
    );
    for m in spec.metrics.iter().flatten() {
        if let Some(r) = &m.resource {
            let (current, target) = torchship_kube::resource_metric(hpa, &r.name);
            let current = current
                .map(|u| format!("{u}%"))
                .unwrap_or_else(|| "<unknown>".into());
            let target = target.map(|u| format!("{u}%")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  resource {} on pods (as a percentage of request): {current} / {target}",
                r.name
            );
        }
    }
    if let Some(m) = torchship_kube::average_metric(hpa) {
        let v = |v: Option<f64>| v.map_or("<unknown>".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "  metric {} (average per pod): {} / {}",
            m.name,
            v(m.current),
            v(m.target)
        );
    }
    let _ = writeln!(
        out,
        "  min replicas {}, max replicas {}; current {}, desired {}",
        spec.min_replicas.unwrap_or(1),
        spec.max_replicas,
        st.current_replicas.unwrap_or(0),
        st.desired_replicas
    );
    for c in st.conditions.iter().flatten() {
        let _ = writeln!(
            out,
            "  condition {} = {} ({}): {}",
            c.type_,
            c.status,
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        );
    }
}

/// Whether the HPA says it cannot read a metric, for `reason` (FailedGetResourceMetric for CPU,
/// FailedGetExternalMetric for KEDA's).
fn lacks_metrics(hpa: &HorizontalPodAutoscaler, reason: &str) -> bool {
    let conditions = hpa
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten());
    conditions.into_iter().any(|c| {
        c.type_ == "ScalingActive" && c.status == "False" && c.reason.as_deref() == Some(reason)
    })
}

/// The HPA's last five events.
async fn hpa_events(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let fields = format!("involvedObject.name={name},involvedObject.kind=HorizontalPodAutoscaler");
    let evs = events
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(|e| cluster.explain(e, "list the HPA's events"))?;
    for e in evs.items.iter().rev().take(5) {
        let _ = writeln!(
            out,
            "  event {}: {}",
            e.reason.clone().unwrap_or_default(),
            e.message.clone().unwrap_or_default()
        );
    }
    Ok(())
}

/// The server's pods: phase, readiness, node.
async fn pods(cluster: &Cluster, ns: &str, out: &mut impl Write) -> Result<(), DeployError> {
    let selector = "app.kubernetes.io/name=torchship-server";
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| cluster.explain(e, "list pods"))?;
    let _ = writeln!(out, "pods:");
    for p in &list.items {
        let status = p.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let ready = status
            .into_iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = node.unwrap_or_else(|| "<unscheduled>".into());
        let ready = if ready { " ready" } else { "" };
        let _ = writeln!(out, "  {} {phase}{ready} on {node}", p.name_any());
    }
    Ok(())
}

/// Fields the server owns that say nothing about the desired state.
fn normalise(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

async fn diff_one(
    cluster: &Cluster,
    object: &Object,
    namespace: &str,
    out: &mut impl Write,
) -> Result<bool, DeployError> {
    let (kind, name) = (object.kind(), object.name());
    let api = object.api(cluster.client.clone(), namespace);
    let live = api
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, &format!("read {kind} {name}")))?;
    let Some(live) = live else {
        let _ = writeln!(out, "+ {kind}/{name} would be created");
        return Ok(true);
    };
    let params = PatchParams::apply(FIELD_MANAGER).dry_run();
    let merged = api
        .patch(name, &params, &Patch::Apply(&object.dynamic()))
        .await
        .map_err(|e| cluster.explain(e, &format!("dry-run apply {kind} {name}")))?;
    let (before, after) = (
        normalise(serde_json::to_value(&live).unwrap_or_default()),
        normalise(serde_json::to_value(&merged).unwrap_or_default()),
    );
    if before == after {
        return Ok(false);
    }
    let _ = writeln!(out, "~ {kind}/{name} would change:");
    let (b, a) = (
        serde_saphyr::to_string(&before).unwrap_or_default(),
        serde_saphyr::to_string(&after).unwrap_or_default(),
    );
    let (bl, al): (Vec<&str>, Vec<&str>) = (b.lines().collect(), a.lines().collect());
    for l in bl.iter().filter(|l| !al.contains(l)) {
        let _ = writeln!(out, "  - {l}");
    }
    for l in al.iter().filter(|l| !bl.contains(l)) {
        let _ = writeln!(out, "  + {l}");
    }
    Ok(true)
}

/// Server-side dry run against what is live; true if anything would change.
pub async fn diff(
    cluster: &Cluster,
    bundle: &Bundle,
    opts: &Options,
    out: &mut impl Write,
) -> Result<bool, DeployError> {
    let mut changed = false;
    for object in bundle.resources() {
        changed |= diff_one(cluster, &object, &opts.namespace, out).await?;
    }
    if !changed {
        let _ = writeln!(out, "no changes");
    }
    Ok(changed)
}

async fn delete_one(
    cluster: &Cluster,
    object: &Object,
    namespace: &str,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let (kind, name) = (object.kind(), object.name());
    let params = DeleteParams {
        dry_run,
        ..Default::default()
    };
    let api = object.api(cluster.client.clone(), namespace);
    match api.delete(name, &params).await {
        Ok(_) => {
            let _ = writeln!(out, "{kind}/{name} deleted");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let _ = writeln!(out, "{kind}/{name} already gone");
            Ok(())
        }
        Err(e) => Err(cluster.explain(e, &format!("delete {kind} {name}"))),
    }
}

/// Deletes in reverse dependency order; the namespace last.
pub async fn delete(
    cluster: &Cluster,
    bundle: &Bundle,
    opts: &Options,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    for object in bundle.resources().iter().rev() {
        delete_one(cluster, object, &opts.namespace, dry_run, out).await?;
    }
    Ok(())
}
