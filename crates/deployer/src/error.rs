//! Every way the deployer stops, each as one paragraph a person can act on; never a panic or a raw
//! debug dump. [`explain`] turns kube's errors into these, given what was being attempted.

use kube::core::Status;

/// Why the deployer stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The manifests or options are wrong.
    #[error(transparent)]
    Manifest(#[from] crate::manifests::ManifestError),
    /// No kubeconfig, or one that names a missing context.
    #[error("cannot load the kube configuration: {0}. Point --kubeconfig (or KUBECONFIG) at a valid file and --context at one of its contexts (kubectl config get-contexts).")]
    Config(String),
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API server at {url}: {reason}. Is the cluster running and is this the right context? Try: kubectl cluster-info")]
    Unreachable { url: String, reason: String },
    /// 401: the credentials were refused.
    #[error("the API server refused the credentials (401 Unauthorized) while trying to {action}: {message}. They may have expired: refresh them (for kind: kind export kubeconfig; for cloud clusters: your provider's get-credentials command).")]
    Unauthorized { action: String, message: String },
    /// 403: the account lacks a permission.
    #[error("the account is not allowed to {action} (403 Forbidden): {message}. Grant it the verb on that resource (k8s/rbac/deployer.yaml lists exactly what the deployer needs).")]
    Forbidden { action: String, message: String },
    /// 409: another field manager owns fields we set.
    #[error("conflict while trying to {action} (409): {message}. Another field manager (often kubectl or a controller) owns these fields. If torchship should own them, run again with --force-conflicts; otherwise remove them from that other tool's configuration.")]
    Conflict { action: String, message: String },
    /// 422: the object was refused as invalid.
    #[error("the API server rejected the object while trying to {action} (422 Invalid): {message}{causes}")]
    Invalid {
        action: String,
        message: String,
        causes: String,
    },
    /// The node named by --node does not exist.
    #[error("node '{0}' does not exist. List the nodes with: kubectl get nodes")]
    NodeNotFound(String),
    /// Preflight found problems that would stop the rollout.
    #[error("preflight failed:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Preflight(Vec<String>),
    /// The rollout did not finish within --timeout.
    #[error("the rollout did not finish within {timeout}s.\n{diagnosis}")]
    RolloutTimeout { timeout: u64, diagnosis: String },
    /// Any other API answer.
    #[error("the API server answered {code} while trying to {action}: {message}")]
    Api {
        action: String,
        code: u16,
        message: String,
    },
    /// Anything else from the client library.
    #[error("while trying to {action}: {message}")]
    Client { action: String, message: String },
}

impl DeployError {
    /// Stable label for logs and scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            DeployError::Manifest(_) => "invalid_manifest",
            DeployError::Config(_) => "config",
            DeployError::Unreachable { .. } => "unreachable",
            DeployError::Unauthorized { .. } => "unauthorized",
            DeployError::Forbidden { .. } => "forbidden",
            DeployError::Conflict { .. } => "conflict",
            DeployError::Invalid { .. } => "invalid",
            DeployError::NodeNotFound(_) => "node_not_found",
            DeployError::Preflight(_) => "preflight",
            DeployError::RolloutTimeout { .. } => "rollout_timeout",
            DeployError::Api { .. } => "api",
            DeployError::Client { .. } => "client",
        }
    }
}

/// Turns a kube error into a [`DeployError`] that says what was being attempted.
pub fn explain(err: kube::Error, action: &str, server: &str) -> DeployError {
    let action = action.to_string();
    match err {
        kube::Error::Api(status) => from_status(*status, action),
        kube::Error::HyperError(e) => DeployError::Unreachable {
            url: server.into(),
            reason: root_cause(&e),
        },
        kube::Error::Service(e) => DeployError::Unreachable {
            url: server.into(),
            reason: root_cause(e.as_ref()),
        },
        other => DeployError::Client {
            action,
            message: other.to_string(),
        },
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn from_status(s: Status, action: String) -> DeployError {
    let message = s.message.clone();
    match s.code {
        401 => DeployError::Unauthorized { action, message },
        403 => DeployError::Forbidden { action, message },
        409 => DeployError::Conflict { action, message },
        422 => {
            let causes: Vec<String> = s
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| format!("\n  - {}: {}", c.field, c.message))
                .collect();
            DeployError::Invalid {
                action,
                message,
                causes: causes.concat(),
            }
        }
        code => DeployError::Api {
            action,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        let mut s = Status::failure(message, "Reason");
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn api_answers_become_advice() {
        let e = explain(
            status(
                403,
                "deployments.apps is forbidden: User \"ci\" cannot patch resource \"deployments\"",
            ),
            "apply Deployment torchship/torchship-server",
            "https://k",
        );
        assert_eq!(e.kind(), "forbidden");
        let text = e.to_string();
        assert!(
            text.contains("cannot patch resource \"deployments\"")
                && text.contains("k8s/rbac/deployer.yaml"),
            "{text}"
        );
        let e = explain(
            status(
                409,
                "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas",
            ),
            "apply",
            "https://k",
        );
        assert!(e.to_string().contains("--force-conflicts"));
        assert_eq!(
            explain(status(401, "Unauthorized"), "list nodes", "https://k").kind(),
            "unauthorized"
        );
        assert_eq!(explain(status(500, "boom"), "x", "https://k").kind(), "api");
    }
}
