//! torchship deployer: rolls the server out to Kubernetes (Deployment, Service, HPA, node pinning and
//! taints, GPU requests), waits for the rollout and explains what blocks it.
//!
//! This crate is the walking skeleton of that tool: its command-line interface is defined here so
//! scripts can be written against it; the Kubernetes work itself lands with the deployer issue, and
//! until then every command says plainly that it is not implemented rather than pretending.

use clap::{Parser, Subcommand, ValueEnum};

/// What to deploy onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    Cpu,
    Gpu,
}

/// Roll torchship out to the current kube context and explain what blocks the rollout.
#[derive(Debug, Parser)]
#[command(name = "deployer", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Namespace to deploy into.
    #[arg(
        long,
        global = true,
        env = "TORCHSHIP_NAMESPACE",
        default_value = "torchship"
    )]
    pub namespace: String,

    /// Server image reference.
    #[arg(long, global = true, env = "TORCHSHIP_IMAGE")]
    pub image: Option<String>,

    /// Node profile: cpu, or gpu (adds nvidia.com/gpu requests and tolerations).
    #[arg(long, global = true, env = "TORCHSHIP_PROFILE", value_enum, default_value_t = Profile::Cpu)]
    pub profile: Profile,

    /// Pin the pods to this node: label it, taint it role=pytorch:NoSchedule, tolerate the taint.
    #[arg(long, global = true, env = "TORCHSHIP_NODE")]
    pub node: Option<String>,
}

/// Subcommands; none means `apply`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight, server-side apply of every object, then wait for the rollout (the default).
    Apply,
    /// Print the final YAML for GitOps.
    Render,
    /// Compare what would be applied with what is live.
    Diff,
    /// Show the HPA, the pods and the nodes they run on.
    Status,
    /// Remove the objects, the node taint and the label.
    Delete,
}

/// Why the deployer stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The command exists in the interface but has not been built yet.
    #[error("'deployer {0}' is not implemented yet (tracked by the deployer issue)")]
    NotImplemented(&'static str),
}

pub fn run(args: Args) -> Result<(), DeployError> {
    let name = match args.command.unwrap_or(Command::Apply) {
        Command::Apply => "apply",
        Command::Render => "render",
        Command::Diff => "diff",
        Command::Status => "status",
        Command::Delete => "delete",
    };
    Err(DeployError::NotImplemented(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_apply() {
        let args = Args::parse_from(["deployer", "--node", "worker-1"]);
        assert!(args.command.is_none());
        assert_eq!(args.node.as_deref(), Some("worker-1"));
        assert!(matches!(
            run(args),
            Err(DeployError::NotImplemented("apply"))
        ));
    }
}
