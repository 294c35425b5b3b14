//! Command-line flags (each with a `TORCHSHIP_*` env var) and the typed config they become.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::control_key::ControlKey;
pub use crate::device::DeviceChoice;
use crate::repository::config::MAX_INTRA_OP_THREADS;

/// Whether models may be loaded and unloaded over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelControl {
    /// The repository is loaded at start-up; `load`/`unload` answer 403.
    None,
    /// `POST /v2/repository/models/{m}/load|unload` are allowed. Loading TorchScript runs code from
    /// the file, so only enable this where the repository folder is trusted.
    Explicit,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A port, or `None` for `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOrOff(pub Option<u16>);

/// Parses a port number, or `off`.
pub fn parse_port_or_off(s: &str) -> Result<PortOrOff, String> {
    match s.trim() {
        "off" => Ok(PortOrOff(None)),
        p => p
            .parse()
            .map(|p| PortOrOff(Some(p)))
            .map_err(|_| format!("'{s}' is not a port (0-65535) or 'off'")),
    }
}

/// Parses a thread count: 0 (the server chooses) up to [`MAX_INTRA_OP_THREADS`]; more would only
/// fail later, inside libtorch or tokio, when the threads are started.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let max = MAX_INTRA_OP_THREADS;
    match s.trim().parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("'{s}' is not a thread count within 0..={max}")),
    }
}

/// Parses `512`, `64KiB`, `10MiB`, `1GiB` (also `kb`/`mb`/`gb` as powers of 1000).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 512, 64KiB or 10MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "'{s}' has an unknown unit (use B, KiB, MiB, GiB, kB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

pub use protocol::units::parse_duration;

/// torchship inference server: serves TorchScript models over the KServe v2 REST protocol.
#[derive(Clone, Debug, Parser)]
#[command(name = "server", version, about, long_about = None)]
pub struct Args {
    /// Address to listen on (0.0.0.0 inside containers).
    #[arg(long, env = "TORCHSHIP_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port for the HTTP API (0 picks a free port and logs it).
    #[arg(long, env = "TORCHSHIP_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Model repository: <dir>/<model>/config.toml and <dir>/<model>/<version>/model.pt.
    #[arg(long, env = "TORCHSHIP_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,

    /// Device for forward passes: auto (CUDA if available), cpu, cuda or cuda:N.
    #[arg(long, env = "TORCHSHIP_DEVICE", default_value = "auto")]
    pub device: DeviceChoice,

    /// Largest accepted request body; larger ones get 413 (e.g. 64MiB).
    #[arg(long, env = "TORCHSHIP_MAX_BODY_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_body_size: usize,

    /// libtorch intra-op threads of each forward thread (0 = one per CPU this process may use: the
    /// cgroup's CPU limit in a container, not the host's core count); a model's config.toml may set
    /// its own. Idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless OMP_WAIT_POLICY is set.
    #[arg(long, env = "TORCHSHIP_INTRA_OP_THREADS", default_value_t = 0, value_parser = parse_threads)]
    pub intra_op_threads: usize,

    /// Threads that handle HTTP (tokio workers). 0 = half the CPUs this process may use, at least
    /// one: the rest are the forward passes' (a worker that preempts a matmul thread stalls the
    /// whole pass).
    #[arg(long, env = "TORCHSHIP_WORKER_THREADS", default_value_t = 0, value_parser = parse_threads)]
    pub worker_threads: usize,

    /// libtorch inter-op threads (0 = libtorch's default).
    #[arg(long, env = "TORCHSHIP_INTER_OP_THREADS", default_value_t = 0, value_parser = parse_threads)]
    pub inter_op_threads: usize,

    /// Exit at start-up if any model fails to load (default: serve the others, report the failure).
    #[arg(long, env = "TORCHSHIP_STRICT_MODELS")]
    pub strict_models: bool,

    /// none: the repository is loaded at start-up and fixed; explicit: also allow
    /// POST /v2/repository/models/{m}/load|unload (runs code from model files: trusted folders only).
    #[arg(long, env = "TORCHSHIP_MODEL_CONTROL", value_enum, default_value_t = ModelControl::None)]
    pub model_control: ModelControl,

    /// Longest a request may wait for its result (504 after); a request's `timeout` parameter
    /// (microseconds) can only shorten it (408 then).
    #[arg(long, env = "TORCHSHIP_DEFAULT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub default_timeout: Duration,

    /// Requests being served at once (all inference routes together); beyond it, 429 at once. The
    /// per-model queues are the first line, this is the second.
    #[arg(long, env = "TORCHSHIP_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// Overrides every model's max_batch_size (rows per request and per batch).
    #[arg(long, env = "TORCHSHIP_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,

    /// Overrides every model's batching.dynamic (false: each request runs alone).
    #[arg(long, env = "TORCHSHIP_DYNAMIC_BATCHING")]
    pub dynamic_batching: Option<bool>,

    /// Overrides every model's batching.max_queue_delay (0 = adaptive), e.g. 2ms.
    #[arg(long, env = "TORCHSHIP_MAX_QUEUE_DELAY", value_parser = parse_duration)]
    pub max_queue_delay: Option<Duration>,

    /// Overrides every model's batching.max_queue_size.
    #[arg(long, env = "TORCHSHIP_MAX_QUEUE_SIZE")]
    pub max_queue_size: Option<usize>,

    /// Longest a client may take to send its request headers (slowloris guard).
    #[arg(long, env = "TORCHSHIP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Longest a client may take to send its request body (408 after).
    #[arg(long, env = "TORCHSHIP_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// After SIGTERM, keep serving this long with readiness at 503, so Kubernetes can take the pod
    /// out of its Service before the listener closes.
    #[arg(long, env = "TORCHSHIP_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// After the listener closes, how long queued and in-flight requests may take to finish
    /// (keep terminationGracePeriodSeconds above shutdown delay + drain timeout).
    #[arg(long, env = "TORCHSHIP_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Also serve GET /metrics on this port (e.g. for a scrape-only NetworkPolicy); it is always on
    /// the main port too.
    #[arg(long, env = "TORCHSHIP_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Port of the KServe v2 gRPC service (inference.GRPCInferenceService, as Triton's 8001);
    /// 0 = any free port, `off` = no gRPC.
    #[arg(long, env = "TORCHSHIP_GRPC_PORT", default_value = "8001", value_parser = parse_port_or_off)]
    pub grpc_port: PortOrOff,

    /// Restrict the repository endpoints (index, load, unload) to callers that send this key in
    /// --control-key-header (compared in constant time; at least 16 characters). Prefer the env
    /// var or --control-key-file: a flag's value is visible in the process list.
    #[arg(long, env = "TORCHSHIP_CONTROL_KEY", hide_env_values = true)]
    pub control_key: Option<String>,

    /// Read the control key from this file (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "TORCHSHIP_CONTROL_KEY_FILE")]
    pub control_key_file: Option<PathBuf>,

    /// The request header that carries the control key.
    #[arg(
        long,
        env = "TORCHSHIP_CONTROL_KEY_HEADER",
        default_value = "x-torchship-control-key"
    )]
    pub control_key_header: String,

    /// Log format: text for people, json for log collectors. Filter with RUST_LOG.
    #[arg(long, env = "TORCHSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Probe a running server's /v2/health/live at --host/--port and exit 0 (200) or 1, instead
    /// of serving: the container image's HEALTHCHECK. Deliberately no env var: one set in a pod's
    /// environment would turn every server into a probe.
    #[arg(long)]
    pub healthcheck: bool,
}

/// Everything `run` needs, checked and typed.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub model_repository: PathBuf,
    pub device: DeviceChoice,
    pub max_body_size: usize,
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub worker_threads: usize,
    pub strict_models: bool,
    pub model_control: ModelControl,
    pub default_timeout: Duration,
    pub metrics_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub max_inflight: usize,
    pub overrides: BatchOverrides,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    /// With a key, the repository endpoints require it.
    pub control_key: Option<ControlKey>,
}

/// Timings of the accept loop and the shutdown sequence (what `serve` needs of the config).
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub header_timeout: Duration,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
}

/// Command-line overrides of every model's batching settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOverrides {
    pub max_batch_size: Option<usize>,
    pub dynamic: Option<bool>,
    pub max_queue_delay: Option<Duration>,
    pub max_queue_size: Option<usize>,
}

impl BatchOverrides {
    /// Applies the overrides to a model's config (before it is validated again by the caller).
    pub fn apply(&self, config: &mut crate::repository::ModelConfig) {
        if let Some(n) = self.max_batch_size {
            config.max_batch_size = n;
        }
        if let Some(d) = self.dynamic {
            config.batching.dynamic = d;
        }
        if let Some(d) = self.max_queue_delay {
            // parse_duration caps at a year, so this always fits; saturate rather than truncate.
            config.batching.max_queue_delay_us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        }
        if let Some(n) = self.max_queue_size {
            config.batching.max_queue_size = n;
        }
    }
}

impl Args {
    /// The typed config; fails only on a control key that cannot be read or is too short.
    pub fn into_config(self) -> Result<ServerConfig, String> {
        let control_key = ControlKey::load(
            &self.control_key_header,
            self.control_key.as_deref(),
            self.control_key_file.as_deref(),
        )?;
        Ok(ServerConfig {
            addr: SocketAddr::new(self.host, self.port),
            model_repository: self.model_repository,
            device: self.device,
            max_body_size: self.max_body_size,
            intra_op_threads: self.intra_op_threads,
            inter_op_threads: self.inter_op_threads,
            worker_threads: self.worker_threads,
            strict_models: self.strict_models,
            model_control: self.model_control,
            default_timeout: self.default_timeout,
            metrics_addr: self.metrics_port.map(|p| SocketAddr::new(self.host, p)),
            grpc_addr: self.grpc_port.0.map(|p| SocketAddr::new(self.host, p)),
            max_inflight: self.max_inflight.max(1),
            overrides: BatchOverrides {
                max_batch_size: self.max_batch_size,
                dynamic: self.dynamic_batching,
                max_queue_delay: self.max_queue_delay,
                max_queue_size: self.max_queue_size,
            },
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            shutdown_delay: self.shutdown_delay,
            drain_timeout: self.drain_timeout,
            control_key,
        })
    }
}

/// CPUs this process may use: the cgroup's CPU limit where there is one (std reads cgroup v1
/// and v2 quotas and the affinity mask), else the host's.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--worker-threads`: as given, or (0) half the usable CPUs, at least one.
pub fn workers(flag: usize) -> usize {
    match flag {
        0 => (usable_cpus() / 2).max(1),
        n => n,
    }
}

impl ServerConfig {
    /// libtorch's intra-op threads: the flag, or one per usable CPU.
    pub fn intra_op(&self) -> usize {
        match self.intra_op_threads {
            0 => usable_cpus(),
            n => n,
        }
    }

    /// tokio worker threads: the flag, or half the usable CPUs (at least one).
    pub fn workers(&self) -> usize {
        workers(self.worker_threads)
    }

    pub fn timings(&self) -> Timings {
        Timings {
            header_timeout: self.header_timeout,
            shutdown_delay: self.shutdown_delay,
            drain_timeout: self.drain_timeout,
        }
    }

    /// A config for tests and embedding: loopback, port 0, CPU, no shutdown delay.
    pub fn for_repository(dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            model_repository: dir.into(),
            device: DeviceChoice::Cpu,
            max_body_size: 64 << 20,
            intra_op_threads: 0,
            inter_op_threads: 0,
            worker_threads: 0,
            strict_models: false,
            model_control: ModelControl::None,
            default_timeout: Duration::from_secs(30),
            metrics_addr: None,
            grpc_addr: None,
            max_inflight: 1024,
            overrides: BatchOverrides::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(20),
            control_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn thread_counts_are_bounded() {
        assert_eq!(parse_threads("0"), Ok(0));
        assert_eq!(parse_threads("1024"), Ok(1024));
        assert!(parse_threads("1025").is_err());
        assert!(parse_threads("-1").is_err());
        assert!(parse_threads("99999999999999999999999").is_err());
        let absurd = Args::try_parse_from(["server", "--worker-threads", "100000000"]);
        assert!(absurd.unwrap_err().to_string().contains("0..=1024"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn devices_parse() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = Args::parse_from(["server"]).into_config().unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.model_repository, PathBuf::from("models"));
        assert_eq!(c.device, DeviceChoice::Auto);
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        assert_eq!(c.overrides, BatchOverrides::default());
        assert_eq!(c.grpc_addr.map(|a| a.port()), Some(8001));
        let off = Args::parse_from(["server", "--grpc-port", "off"]);
        assert_eq!(off.into_config().unwrap().grpc_addr, None);
        assert!(Args::try_parse_from(["server", "--grpc-port", "70000"]).is_err());
        let c = Args::parse_from([
            "server",
            "--dynamic-batching",
            "false",
            "--max-queue-delay",
            "2ms",
        ])
        .into_config()
        .unwrap();
        assert_eq!(c.overrides.dynamic, Some(false));
        assert_eq!(c.overrides.max_queue_delay, Some(Duration::from_millis(2)));
    }
}
