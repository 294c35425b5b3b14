//! Command-line interface: clap derive, every flag with help and an env var.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

use crate::manifests::{Profile, RenderOptions};
use crate::tuning::{parse_env, PullPolicy, Tuning};

/// Roll torchship out to the current kube context and explain what blocks the rollout.
#[derive(Debug, Parser)]
#[command(name = "deployer", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub options: Options,
}

/// Subcommands; none means `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Preflight, server-side apply of every object, then wait for the rollout (the default).
    Apply,
    /// Print the final YAML (for GitOps); needs no cluster.
    Render,
    /// Server-side dry run against what is live; exit 0 (no changes), 1 (changes), >1 (error).
    Diff,
    /// Show the HPA (like `kubectl describe hpa`), the pods and the nodes they run on.
    Status,
    /// Remove the objects, the node taint and the node label.
    Delete,
}

/// `--dry-run`: as kubectl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Print what would be applied; contact no cluster.
    Client,
    /// Send every request with dryRun=All: the API server validates, nothing is stored.
    Server,
}

/// Options shared by every subcommand.
#[derive(Clone, Debug, ClapArgs)]
pub struct Options {
    /// Namespace to deploy into.
    #[arg(
        long,
        global = true,
        env = "TORCHSHIP_NAMESPACE",
        default_value = "torchship"
    )]
    pub namespace: String,

    /// Server image reference: name:tag, or name@sha256:<64 hex> (pinned by digest, the production
    /// choice). Default: the tag in k8s/base/deployment.yaml, for local builds.
    #[arg(long, global = true, env = "TORCHSHIP_IMAGE", value_parser = parse_image)]
    pub image: Option<String>,

    /// cpu, or gpu: nvidia.com/gpu limits, the GPU toleration and node selector, --device cuda.
    #[arg(long, global = true, env = "TORCHSHIP_PROFILE", value_enum, default_value_t = Profile::Cpu)]
    pub profile: Profile,

    /// Pin the pods to this node: label it role=pytorch, taint it role=pytorch:NoSchedule, and
    /// give the pods the matching node affinity, nodeSelector and toleration.
    #[arg(long, global = true, env = "TORCHSHIP_NODE")]
    pub node: Option<String>,

    /// Scale on the server's queue instead of CPU: a KEDA ScaledObject with a Prometheus trigger
    /// in place of the HPA (needs KEDA and Prometheus; see k8s/overlays/custom-metrics).
    #[arg(long, global = true, env = "TORCHSHIP_CUSTOM_METRICS")]
    pub custom_metrics: bool,

    /// With --custom-metrics: the Prometheus KEDA queries (default http://prometheus.monitoring.svc:9090).
    #[arg(long, global = true, env = "TORCHSHIP_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,

    /// With --custom-metrics: the mean number of queued requests per pod the HPA holds (default 2;
    /// k8s/README.md says how to choose it).
    #[arg(long, global = true, env = "TORCHSHIP_QUEUE_TARGET")]
    pub queue_target: Option<String>,

    /// HPA minimum replicas (default 3, from k8s/base/hpa.yaml).
    #[arg(long, global = true, env = "TORCHSHIP_MIN_REPLICAS")]
    pub min_replicas: Option<i32>,

    /// HPA maximum replicas (default 10).
    #[arg(long, global = true, env = "TORCHSHIP_MAX_REPLICAS")]
    pub max_replicas: Option<i32>,

    /// HPA target CPU utilisation, percent of the CPU request (default 70).
    #[arg(long, global = true, env = "TORCHSHIP_CPU_TARGET")]
    pub cpu_target: Option<i32>,

    /// The server container's CPU request (e.g. 250m): what the HPA's utilisation is measured
    /// against, and what decides how many replicas fit on a node (default 1, k8s/base).
    #[arg(long, global = true, env = "TORCHSHIP_CPU_REQUEST")]
    pub cpu_request: Option<String>,

    /// The server container's CPU limit (e.g. 250m; default 2): the most one replica can use, so
    /// what one replica can serve. At least the CPU request.
    #[arg(long, global = true, env = "TORCHSHIP_CPU_LIMIT")]
    pub cpu_limit: Option<String>,

    /// The server container's memory request (e.g. 768Mi; default 1Gi).
    #[arg(long, global = true, env = "TORCHSHIP_MEMORY_REQUEST")]
    pub memory_request: Option<String>,

    /// imagePullPolicy: Never for an image imported into the nodes' runtime (no registry),
    /// IfNotPresent (the default, with an image pinned by digest) or Always.
    #[arg(long, global = true, env = "TORCHSHIP_IMAGE_PULL_POLICY", value_enum)]
    pub image_pull_policy: Option<PullPolicy>,

    /// An environment variable for the server (NAME=VALUE, repeatable): a server flag
    /// (TORCHSHIP_MAX_BATCH_SIZE=16), or any value whose change rolls every pod.
    #[arg(long = "env", global = true, env = "TORCHSHIP_SERVER_ENV", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// The HPA's scale-down stabilization window (default 300s, k8s/base/hpa.yaml; at most 3600s).
    #[arg(long, global = true, env = "TORCHSHIP_SCALE_DOWN_WINDOW", value_parser = parse_duration)]
    pub scale_down_window: Option<Duration>,

    /// GPUs per pod with --profile gpu.
    #[arg(
        long,
        global = true,
        env = "TORCHSHIP_GPUS_PER_POD",
        default_value_t = 1
    )]
    pub gpus_per_pod: u32,

    /// Kube context to use (default: the current context).
    #[arg(long, global = true, env = "TORCHSHIP_KUBE_CONTEXT")]
    pub context: Option<String>,

    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "TORCHSHIP_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// How long `apply` waits for the rollout (e.g. 5m, 90s).
    #[arg(long, global = true, env = "TORCHSHIP_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How often `apply` checks the rollout.
    #[arg(long, global = true, env = "TORCHSHIP_POLL_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// client: print what would be applied; server: let the API server validate without storing.
    #[arg(long, global = true, env = "TORCHSHIP_DRY_RUN", value_enum)]
    pub dry_run: Option<DryRun>,

    /// Take over fields another field manager owns (server-side apply `force`).
    #[arg(long, global = true, env = "TORCHSHIP_FORCE_CONFLICTS")]
    pub force_conflicts: bool,
}

impl Options {
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            profile: self.profile,
            pinned: self.node.is_some(),
            custom_metrics: self.custom_metrics,
            queue: crate::queue::QueueOptions {
                prometheus_url: self.prometheus_url.clone(),
                target: self.queue_target.clone(),
            },
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            cpu_target: self.cpu_target,
            gpus_per_pod: self.gpus_per_pod,
            tuning: Tuning {
                cpu_request: self.cpu_request.clone(),
                cpu_limit: self.cpu_limit.clone(),
                memory_request: self.memory_request.clone(),
                pull_policy: self.image_pull_policy,
                env: self.env.clone(),
                scale_down_window: self.scale_down_window,
            },
        }
    }
}

pub use protocol::units::parse_duration;

/// An image reference; a digest, if given, must be a whole sha256 (a truncated one would only be
/// refused by the kubelet, pod by pod, as an InvalidImageName).
pub fn parse_image(s: &str) -> Result<String, String> {
    let s = s.trim();
    let name = match s.split_once('@') {
        None => s,
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
                format!("'{digest}': a digest is sha256:<64 hex digits> (as `docker buildx imagetools inspect` prints it)")
            })?;
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "'{digest}': sha256 digests are 64 lowercase hex digits"
                ));
            }
            name
        }
    };
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
    {
        return Err(format!(
            "'{s}' is not an image reference (lowercase name[:tag][@sha256:...])"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "Options:" line lists every shared flag, and only those.
    #[test]
    fn the_readmes_options_line_lists_every_flag() {
        use clap::CommandFactory;
        let readme = include_str!("../../../README.md");
        let line = readme
            .split("\nOptions: ")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("README: the Options: paragraph");
        let mut listed: Vec<&str> = line
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|w| w.strip_prefix("--"))
            .map(|w| w.split([' ', '=']).next().unwrap())
            .collect();
        listed.sort();
        let mut flags: Vec<String> = Args::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .filter(|f| f != "help" && f != "version")
            .collect();
        flags.sort();
        assert!(
            flags.contains(&"image-pull-policy".to_string()),
            "{flags:?}"
        );
        assert_eq!(listed, flags, "README Options: vs the deployer's flags");
    }

    #[test]
    fn no_subcommand_means_apply_and_node_means_pinned() {
        let a = Args::parse_from(["deployer", "--node", "worker-1", "--profile", "gpu"]);
        assert!(a.command.is_none());
        let r = a.options.render_options();
        assert!(r.pinned && r.profile == Profile::Gpu);
        assert_eq!(a.options.timeout, Duration::from_secs(300));
        let a = Args::parse_from([
            "deployer",
            "render",
            "--dry-run",
            "server",
            "--timeout",
            "90s",
        ]);
        assert_eq!(a.command, Some(Command::Render));
        assert_eq!(a.options.dry_run, Some(DryRun::Server));
        assert_eq!(a.options.timeout, Duration::from_secs(90));
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn images_by_tag_or_whole_digest() {
        let digest = format!(
            "registry.example/torchship/server@sha256:{}",
            "ab12".repeat(16)
        );
        assert_eq!(parse_image(&digest).unwrap(), digest);
        assert!(parse_image("torchship/server:0.1.0").is_ok());
        let tagged = format!("registry.example:5000/server:1@sha256:{}", "0".repeat(64));
        assert!(parse_image(&tagged).is_ok());
        assert!(parse_image("server@sha256:abc").unwrap_err().contains("64"));
        assert!(parse_image("server@md5:00")
            .unwrap_err()
            .contains("sha256:"));
        assert!(parse_image("Server:1").is_err());
        assert!(parse_image("").is_err());
    }
}
