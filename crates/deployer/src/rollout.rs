//! Waiting for the rollout with kubectl's rules (observedGeneration, updated, old replicas gone,
//! available), printing progress, and explaining what blocks it: the scheduler's messages, image pull
//! errors and crash loops, translated into a diagnosis and a suggested fix.

use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::ResourceExt;

use crate::cluster::Cluster;
use crate::error::DeployError;

/// One poll's verdict, with kubectl's wording.
#[derive(Debug, PartialEq)]
pub enum Progress {
    Done(String),
    Waiting(String),
    Failed(String),
}

/// kubectl's `rollout status` logic for a Deployment.
pub fn progress(d: &Deployment) -> Progress {
    let name = d.name_any();
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = &d.status else {
        return Progress::Waiting(
            "waiting for the deployment to be observed by its controller".into(),
        );
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("waiting for the deployment spec update to be observed".into());
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
    {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return Progress::Failed(format!("deployment {name} exceeded its progress deadline"));
        }
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        Progress::Waiting(format!(
            "{updated} of {want} new replicas have been updated"
        ))
    } else if replicas > updated {
        Progress::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ))
    } else {
        Progress::Done(format!(
            "deployment {name} successfully rolled out ({available} replicas available)"
        ))
    }
}

/// Polls until the rollout is done, fails, or `timeout` passes (then diagnoses).
pub async fn wait(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    timeout: Duration,
    poll: Duration,
    out: &mut impl Write,
) -> Result<(), DeployError> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let deadline = tokio::time::Instant::now() + timeout;
    // Stuck without progress for this long: say why once, while still waiting.
    let patience = (timeout / 3).max(Duration::from_secs(20));
    let mut last = String::new();
    let mut since = tokio::time::Instant::now();
    let mut explained = false;
    loop {
        let d = api
            .get(name)
            .await
            .map_err(|e| cluster.explain(e, &format!("read deployment {name}")))?;
        match progress(&d) {
            Progress::Done(line) => {
                let _ = writeln!(out, "{line}");
                return Ok(());
            }
            Progress::Failed(line) => {
                let diagnosis = diagnose(cluster, ns, &d).await?;
                return Err(DeployError::RolloutTimeout {
                    timeout: timeout.as_secs(),
                    diagnosis: format!("{line}\n{diagnosis}"),
                });
            }
            Progress::Waiting(line) => {
                if line != last {
                    let _ = writeln!(out, "waiting for rollout: {line}");
                    last = line;
                    since = tokio::time::Instant::now();
                } else if !explained
                    && since.elapsed() >= patience
                    && tokio::time::Instant::now() + poll < deadline
                {
                    let _ = writeln!(
                        out,
                        "no progress for {}s; still waiting. {}",
                        patience.as_secs(),
                        diagnose(cluster, ns, &d).await?
                    );
                    explained = true;
                }
            }
        }
        if tokio::time::Instant::now() + poll > deadline {
            let diagnosis = diagnose(cluster, ns, &d).await?;
            return Err(DeployError::RolloutTimeout {
                timeout: timeout.as_secs(),
                diagnosis,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Why the deployment's pods are not ready, in plain words, with a suggested fix.
pub async fn diagnose(cluster: &Cluster, ns: &str, d: &Deployment) -> Result<String, DeployError> {
    let selector = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| cluster.explain(e, "list the deployment's pods"))?;
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let mut findings: Vec<String> = Vec::new();
    for pod in list.items.iter().filter(|p| !is_ready(p)) {
        let name = pod.name_any();
        let evs = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .map_err(|e| cluster.explain(e, &format!("list the events of pod {name}")))?;
        if let Some(msg) = evs
            .items
            .iter()
            .rev()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .and_then(|e| e.message.clone())
        {
            findings.extend(
                explain_scheduling(&msg)
                    .into_iter()
                    .map(|f| format!("pod {name} cannot be scheduled: {f}")),
            );
        }
        for cs in pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
        {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            match waiting.reason.as_deref() {
                Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName") => findings.push(format!(
                    "pod {name}: the image {} cannot be pulled ({}). Check the name and tag, the registry credentials (imagePullSecrets), or for kind: kind load docker-image {}",
                    cs.image, waiting.message.clone().unwrap_or_default(), cs.image
                )),
                Some("CrashLoopBackOff") => {
                    let params = LogParams { container: Some(cs.name.clone()), previous: true, tail_lines: Some(10), ..Default::default() };
                    let logs = pods.logs(&name, &params).await.unwrap_or_else(|e| format!("(logs unavailable: {e})"));
                    findings.push(format!(
                        "pod {name}: container {} keeps crashing (restarted {} times). Its last log lines:\n{}",
                        cs.name,
                        cs.restart_count,
                        logs.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
                    ));
                }
                _ => {}
            }
        }
    }
    findings.dedup();
    Ok(if findings.is_empty() {
        "No pod reports a scheduling, image or crash problem; the pods may still be starting (model load and warm-up) or failing their readiness probe. Look at: kubectl describe pods -n <namespace>".into()
    } else {
        format!(
            "Diagnosis:\n{}",
            findings
                .iter()
                .map(|f| format!("  - {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Translates the scheduler's "0/3 nodes are available: ..." into advice, one line per cause.
pub fn explain_scheduling(message: &str) -> Vec<String> {
    let message = message.split(". preemption:").next().unwrap_or(message);
    let causes = message
        .split_once("available:")
        .map(|(_, rest)| rest)
        .unwrap_or(message);
    causes
        .split(", ")
        .map(|c| c.trim().trim_end_matches('.'))
        .filter(|c| !c.is_empty() && !c.starts_with("preemption:"))
        .map(|cause| {
            if let Some(taint) = cause.split_once("untolerated taint").map(|(_, t)| t.trim()) {
                format!("{cause}: the pods do not tolerate the taint {taint}. Deploy with --node NAME (it adds the role=pytorch toleration), or remove the taint: kubectl taint node NAME <key>-")
            } else if cause.contains("didn't match Pod's node affinity/selector") {
                format!("{cause}: no node carries the labels the pods select (role=pytorch when pinned, nvidia.com/gpu.present=true for GPUs). Label the target node (deployer --node NAME does it), or deploy without --node")
            } else if cause.contains("Insufficient nvidia.com/gpu") {
                format!("{cause}: not enough free GPUs. Is the NVIDIA device plugin running (kubectl get ds -A | grep nvidia)? Lower --gpus-per-pod or --min-replicas, or add GPU nodes")
            } else if cause.contains("Insufficient cpu") || cause.contains("Insufficient memory") {
                format!("{cause}: the nodes lack free CPU or memory for the pods' requests. Add nodes, lower --min-replicas, or lower the requests in k8s/base/deployment.yaml")
            } else {
                cause.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(generation: i64, want: i32, s: DeploymentStatus) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(want),
                ..Default::default()
            }),
            status: Some(s),
            ..Default::default()
        };
        d.metadata.name = Some("torchship-server".into());
        d.metadata.generation = Some(generation);
        d
    }

    #[test]
    fn kubectl_rollout_rules() {
        let st = |og, updated, replicas, available| DeploymentStatus {
            observed_generation: Some(og),
            updated_replicas: Some(updated),
            replicas: Some(replicas),
            available_replicas: Some(available),
            ..Default::default()
        };
        assert!(
            matches!(progress(&deployment(2, 3, st(1, 3, 3, 3))), Progress::Waiting(w) if w.contains("spec update"))
        );
        assert!(
            matches!(progress(&deployment(2, 3, st(2, 1, 3, 1))), Progress::Waiting(w) if w == "1 of 3 new replicas have been updated")
        );
        assert!(
            matches!(progress(&deployment(2, 3, st(2, 3, 4, 3))), Progress::Waiting(w) if w == "1 old replicas are pending termination")
        );
        assert!(
            matches!(progress(&deployment(2, 3, st(2, 3, 3, 2))), Progress::Waiting(w) if w == "2 of 3 updated replicas are available")
        );
        assert!(matches!(
            progress(&deployment(2, 3, st(2, 3, 3, 3))),
            Progress::Done(_)
        ));
    }

    #[test]
    fn scheduler_messages_become_advice() {
        let msg = "0/3 nodes are available: 1 node(s) had untolerated taint {role: pytorch}, 1 node(s) didn't match Pod's node affinity/selector, 1 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
        let lines = explain_scheduling(msg);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].contains("do not tolerate the taint {role: pytorch}")
                && lines[0].contains("--node")
        );
        assert!(
            lines[1].contains("label the target node")
                || lines[1].contains("Label the target node")
        );
        assert!(lines[2].contains("NVIDIA device plugin"));
        assert!(
            explain_scheduling("0/2 nodes are available: 2 Insufficient cpu.")[0]
                .contains("lack free CPU")
        );
    }
}
