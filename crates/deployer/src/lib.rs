//! torchship deployer: rolls the server out to Kubernetes (Deployment, Service, HPA, node pinning and
//! taints, GPU requests), waits for the rollout and explains what blocks it.
//!
//! Map of the crate:
//! - [`cli`]: flags (each with an env var) and subcommands.
//! - [`manifests`]: `k8s/base/` embedded and parsed into typed objects; the overlays as typed
//!   transforms; `render`.

pub mod cli;
pub mod manifests;

pub use cli::{Args, Command, DryRun, Options};

/// Why the deployer stopped (each with a plain-words message; `main` exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The manifests or options are wrong.
    #[error(transparent)]
    Manifest(#[from] manifests::ManifestError),
    /// The command exists in the interface but has not been built yet.
    #[error("'deployer {0}' is not implemented yet (tracked by the deployer issue); 'deployer render' is")]
    NotImplemented(&'static str),
}

impl DeployError {
    /// Stable label for logs and scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            DeployError::Manifest(_) => "invalid_manifest",
            DeployError::NotImplemented(_) => "not_implemented",
        }
    }
}

/// Runs one subcommand, writing its report to `out`.
pub async fn run(args: Args, out: &mut impl std::io::Write) -> Result<(), DeployError> {
    let bundle = manifests::Bundle::render(&args.options.render_options())?;
    match args.command.unwrap_or(Command::Apply) {
        Command::Render => {
            let _ = out.write_all(bundle.to_yaml().as_bytes());
            Ok(())
        }
        Command::Apply => Err(DeployError::NotImplemented("apply")),
        Command::Diff => Err(DeployError::NotImplemented("diff")),
        Command::Status => Err(DeployError::NotImplemented("status")),
        Command::Delete => Err(DeployError::NotImplemented("delete")),
    }
}
