//! Waiting for the rollout with kubectl's rules (observedGeneration, updated, old replicas gone,
//! available), printing progress, and explaining what blocks it: the scheduler's messages, image pull
//! errors and crash loops, translated into a diagnosis and a suggested fix.

use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::ResourceExt;

use crate::cluster::Cluster;
use crate::error::DeployError;
use crate::scheduling;

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

/// A finished rollout with fewer available replicas than `floor` (the HPA's minReplicas) is not
/// done yet: the Deployment has no `replicas` of its own (the HPA owns it), so the API server
/// creates it with 1 and the HPA scales it to its minimum on its next sync, seconds later.
pub fn below_floor(d: &Deployment, floor: i32) -> Option<String> {
    let available = d.status.as_ref()?.available_replicas.unwrap_or(0);
    (available < floor).then(|| {
        format!("{available} of {floor} replicas available (the HPA's minReplicas; it scales the Deployment up from 1)")
    })
}

/// Polls until the rollout is done with at least `floor` replicas available, fails, or `timeout`
/// passes (then diagnoses).
pub async fn wait(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    floor: i32,
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
        let verdict = match progress(&d) {
            Progress::Done(line) => match below_floor(&d, floor) {
                Some(wait) => Progress::Waiting(wait),
                None => Progress::Done(line),
            },
            other => other,
        };
        match verdict {
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
    // Kubernetes >= 1.36 says only "had untolerated taint(s)": the taints are read from the nodes.
    let nodes = Api::<Node>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster.explain(e, "list nodes"))?
        .items;
    let mut findings: Vec<String> = Vec::new();
    // One line per scheduling cause, naming every pod it holds back (the pods of one ReplicaSet
    // usually share it).
    let mut unschedulable: Vec<(String, Vec<String>)> = Vec::new();
    for pod in list.items.iter().filter(|p| !is_ready(p)) {
        let name = pod.name_any();
        // A pod the scheduler has placed since keeps its old FailedScheduling event (the first
        // pod of a pinned apply is created before the node is labelled): not a cause any more.
        let placed = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
        let msg = match placed {
            true => None,
            false => failed_scheduling(cluster, ns, &name).await?,
        };
        if let Some(msg) = msg {
            let untolerated = scheduling::untolerated_taints(pod, &nodes);
            for cause in scheduling::explain(&msg, &untolerated) {
                match unschedulable.iter_mut().find(|(c, _)| *c == cause) {
                    Some((_, pods)) => pods.push(name.clone()),
                    None => unschedulable.push((cause, vec![name.clone()])),
                }
            }
        }
        findings.extend(container_problems(&pods, pod).await);
    }
    let scheduling = unschedulable.into_iter().map(|(cause, pods)| {
        let which = if pods.len() == 1 { "pod" } else { "pods" };
        format!("{which} {} cannot be scheduled: {cause}", pods.join(", "))
    });
    findings.splice(0..0, scheduling);
    findings.dedup();
    Ok(if findings.is_empty() {
        "No pod reports a scheduling, image or crash problem; the pods may still be starting (model load and warm-up) or failing their readiness probe. Look at: kubectl describe pods -n <namespace>".into()
    } else {
        let lines: Vec<String> = findings.iter().map(|f| format!("  - {f}")).collect();
        format!("Diagnosis:\n{}", lines.join("\n"))
    })
}

/// The scheduler's latest FailedScheduling message for the pod, if any.
async fn failed_scheduling(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
) -> Result<Option<String>, DeployError> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let evs = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .map_err(|e| cluster.explain(e, &format!("list the events of pod {pod}")))?;
    Ok(evs
        .items
        .iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .and_then(|e| e.message.clone()))
}

/// Images that cannot be pulled and containers that keep crashing (with their last log lines).
async fn container_problems(pods: &Api<Pod>, pod: &Pod) -> Vec<String> {
    let name = pod.name_any();
    let mut findings = Vec::new();
    let statuses = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten());
    for cs in statuses {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        match waiting.reason.as_deref() {
            Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName") => findings.push(format!(
                "pod {name}: the image {} cannot be pulled ({}). Check the name and tag, the registry credentials (imagePullSecrets), or for kind: kind load docker-image {}",
                cs.image, waiting.message.clone().unwrap_or_default(), cs.image
            )),
            // imagePullPolicy Never: the kubelet only looks in the node's own image store.
            Some("ErrImageNeverPull") => findings.push(format!(
                "pod {name}: the image {} is not on node {} and imagePullPolicy is Never (ErrImageNeverPull: {}). Put it into the node's container runtime first: for the local cluster, scripts/image.sh build && scripts/image.sh import; for kind, kind load docker-image {}",
                cs.image,
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("(unscheduled)"),
                waiting.message.clone().unwrap_or_default(),
                cs.image
            )),
            Some("CrashLoopBackOff") => {
                let params = LogParams { container: Some(cs.name.clone()), previous: true, tail_lines: Some(10), ..Default::default() };
                let logs = pods.logs(&name, &params).await.unwrap_or_else(|e| format!("(logs unavailable: {e})"));
                let tail: Vec<String> = logs.lines().map(|l| format!("      {l}")).collect();
                findings.push(format!(
                    "pod {name}: container {} keeps crashing (restarted {} times). Its last log lines:\n{}",
                    cs.name,
                    cs.restart_count,
                    tail.join("\n")
                ));
            }
            _ => {}
        }
    }
    findings
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
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
    fn a_rollout_below_the_hpa_minimum_is_not_done() {
        let st = |n| DeploymentStatus {
            observed_generation: Some(1),
            updated_replicas: Some(n),
            replicas: Some(n),
            available_replicas: Some(n),
            ..Default::default()
        };
        let one = deployment(1, 1, st(1));
        assert_eq!(
            below_floor(&one, 3).as_deref(),
            Some("1 of 3 replicas available (the HPA's minReplicas; it scales the Deployment up from 1)")
        );
        assert_eq!(below_floor(&deployment(1, 3, st(3)), 3), None);
    }
}
