//! Talking to the cluster: the client, server-side apply of the bundle (one field manager), and the
//! node label and taint, written by read-modify-write with `resourceVersion` (the taint list is atomic:
//! server-side apply would replace other owners' taints).

use std::fmt::Debug;
use std::io::Write;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use crate::cli::{DryRun, Options};
use crate::error::{explain, DeployError};
use crate::manifests::{Bundle, NODE_LABEL};
use crate::objects::Object;

/// The one field manager for everything the deployer applies.
pub const FIELD_MANAGER: &str = "torchship-deployer";

/// A connected client and the API server's address (for messages).
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub server: String,
}

impl Cluster {
    /// Connects with --kubeconfig/--context, or the usual inference (KUBECONFIG, ~/.kube/config,
    /// in-cluster).
    pub async fn connect(opts: &Options) -> Result<Cluster, DeployError> {
        let (client, server) =
            torchship_kube::client(opts.kubeconfig.as_deref(), opts.context.as_deref())
                .await
                .map_err(DeployError::Config)?;
        Ok(Cluster { client, server })
    }

    pub fn explain(&self, err: kube::Error, action: &str) -> DeployError {
        explain(err, action, &self.server)
    }
}

/// What an apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

fn apply_params(opts: &Options) -> PatchParams {
    let mut p = PatchParams::apply(FIELD_MANAGER);
    if opts.force_conflicts {
        p = p.force();
    }
    if opts.dry_run == Some(DryRun::Server) {
        p = p.dry_run();
    }
    p
}

/// Server-side applies one object; compares resourceVersions to say what changed.
async fn apply_one(
    cluster: &Cluster,
    object: &Object,
    opts: &Options,
) -> Result<Outcome, DeployError> {
    let (kind, name) = (object.kind(), object.name());
    let api = object.api(cluster.client.clone(), &opts.namespace);
    let before = api
        .get_opt(name)
        .await
        .map_err(|e| cluster.explain(e, &format!("read {kind} {name}")))?;
    let after = api
        .patch(name, &apply_params(opts), &Patch::Apply(&object.dynamic()))
        .await
        .map_err(|e| cluster.explain(e, &format!("apply {kind} {name}")))?;
    Ok(match before {
        None => Outcome::Created,
        Some(b) if b.resource_version() == after.resource_version() => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    })
}

/// Applies every object in dependency order, one line each; returns how many changed.
pub async fn apply_bundle(
    cluster: &Cluster,
    bundle: &Bundle,
    opts: &Options,
    out: &mut impl Write,
) -> Result<usize, DeployError> {
    let dry = if opts.dry_run == Some(DryRun::Server) {
        " (server dry run)"
    } else {
        ""
    };
    let mut changed = 0;
    for object in bundle.resources() {
        let o = apply_one(cluster, &object, opts).await?;
        changed += (o != Outcome::Unchanged) as usize;
        let _ = writeln!(
            out,
            "{}/{} {}{dry}",
            object.label(),
            object.name(),
            o.word()
        );
    }
    Ok(changed)
}

/// The taint that keeps every other workload off the pinned node.
pub fn reserved_taint() -> Taint {
    Taint {
        key: NODE_LABEL.0.into(),
        value: Some(NODE_LABEL.1.into()),
        effect: "NoSchedule".into(),
        time_added: None,
    }
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.value == b.value && a.effect == b.effect
}

/// Adds (`reserve`) or removes our label and taint, keeping everything else on the node. Retries
/// when someone else wrote the node between our read and our write (409).
pub async fn set_node(
    cluster: &Cluster,
    name: &str,
    reserve: bool,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<bool, DeployError> {
    let api: Api<Node> = Api::all(cluster.client.clone());
    for _attempt in 0..5 {
        let Some(mut node) = api
            .get_opt(name)
            .await
            .map_err(|e| cluster.explain(e, &format!("read node {name}")))?
        else {
            return Err(DeployError::NodeNotFound(name.into()));
        };
        let labels = node.metadata.labels.get_or_insert_with(Default::default);
        let mut changed = if reserve {
            labels
                .insert(NODE_LABEL.0.into(), NODE_LABEL.1.into())
                .as_deref()
                != Some(NODE_LABEL.1)
        } else {
            labels.remove(NODE_LABEL.0).is_some()
        };
        let taints = node
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new);
        let ours = reserved_taint();
        let present = taints.iter().any(|t| same_taint(t, &ours));
        if reserve && !present {
            taints.push(ours);
            changed = true;
        } else if !reserve && present {
            taints.retain(|t| !same_taint(t, &ours));
            changed = true;
        }
        if !changed {
            let _ = writeln!(out, "node/{name} unchanged");
            return Ok(false);
        }
        let params = PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        match api.replace(name, &params, &node).await {
            Ok(_) => {
                let what = if reserve {
                    "labelled role=pytorch and tainted role=pytorch:NoSchedule"
                } else {
                    "label and taint removed"
                };
                let _ = writeln!(out, "node/{name} {what}");
                return Ok(true);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue, // changed under us: read again
            Err(e) => return Err(cluster.explain(e, &format!("update node {name}"))),
        }
    }
    Err(DeployError::Client {
        action: format!("update node {name}"),
        message: "it kept changing under us (5 conflicts in a row)".into(),
    })
}
