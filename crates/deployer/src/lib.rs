//! torchship deployer: rolls the server out to Kubernetes (Deployment, Service, HPA, node pinning and
//! taints, GPU requests), waits for the rollout and explains what blocks it.
//!
//! Map of the crate:
//! - [`cli`]: flags (each with an env var) and subcommands.
//! - [`manifests`]: `k8s/base/` embedded and parsed into typed objects; the overlays as typed
//!   transforms; `render`. [`objects`]: the bundle as the one ordered list apply, diff and delete
//!   walk.
//! - [`tuning`]: requests, pull policy, extra env and the scale-down window on top of those.
//! - [`cluster`]: the client, server-side apply, the node label and taint (read-modify-write).
//! - [`preflight`]: checks before applying.
//! - [`queue`]: `--custom-metrics`, the KEDA ScaledObject that scales on the queue, and what
//!   `status` says when its pipeline (KEDA, Prometheus) breaks.
//! - [`rollout`]: waiting with kubectl's rules, and the diagnosis of stuck pods.
//! - [`scheduling`]: the scheduler's FailedScheduling messages and the untolerated taints, as advice.
//! - [`commands`]: `status`, `diff`, `delete`.
//! - [`error`]: every failure as one actionable paragraph.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod error;
pub mod manifests;
pub mod objects;
pub mod preflight;
pub mod queue;
pub mod rollout;
pub mod scheduling;
pub mod tuning;

use std::io::Write;

pub use cli::{Args, Command, DryRun, Options};
pub use error::DeployError;

/// Exit code of a successful run: 0, or 1 when `diff` found changes (as `kubectl diff`).
pub async fn run(args: Args, out: &mut impl Write) -> Result<u8, DeployError> {
    let opts = args.options;
    let bundle = manifests::Bundle::render(&opts.render_options())?;
    let command = args.command.unwrap_or(Command::Apply);
    if command == Command::Render
        || (command == Command::Apply && opts.dry_run == Some(DryRun::Client))
    {
        let _ = out.write_all(bundle.to_yaml().as_bytes());
        return Ok(0);
    }
    let cluster = cluster::Cluster::connect(&opts).await?;
    let server_dry_run = opts.dry_run == Some(DryRun::Server);
    match command {
        Command::Render => unreachable!("handled above"),
        Command::Apply => {
            preflight::run(&cluster, &bundle, &opts, out).await?;
            if !opts.custom_metrics && !server_dry_run {
                let name = bundle.hpa.metadata.name.as_deref().unwrap_or_default();
                queue::remove_leftover(&cluster, &opts.namespace, name, opts.timeout, out).await?;
            }
            let mut changed = cluster::apply_bundle(&cluster, &bundle, &opts, out).await?;
            if let Some(node) = &opts.node {
                changed +=
                    cluster::set_node(&cluster, node, true, server_dry_run, out).await? as usize;
            }
            if server_dry_run {
                let _ = writeln!(out, "server dry run: nothing was stored");
                return Ok(0);
            }
            let name = bundle.deployment.metadata.name.clone().unwrap_or_default();
            let floor = bundle
                .hpa
                .spec
                .as_ref()
                .and_then(|s| s.min_replicas)
                .unwrap_or(1);
            rollout::wait(
                &cluster,
                &opts.namespace,
                &name,
                floor,
                opts.timeout,
                opts.poll_interval,
                out,
            )
            .await?;
            if changed == 0 {
                let _ = writeln!(out, "no changes: everything was already as rendered");
            }
            Ok(0)
        }
        Command::Diff => Ok(commands::diff(&cluster, &bundle, &opts, out).await? as u8),
        Command::Status => commands::status(&cluster, &bundle, &opts, out)
            .await
            .map(|_| 0),
        Command::Delete => {
            commands::delete(&cluster, &bundle, &opts, server_dry_run, out).await?;
            if let Some(node) = &opts.node {
                cluster::set_node(&cluster, node, false, server_dry_run, out).await?;
            }
            Ok(0)
        }
    }
}
