//! Command-line interface (names fixed by the issue: scripts and docs rely on them).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Which endpoint and encoding to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Api {
    /// KServe v2 infer with JSON data.
    V2,
    /// KServe v2 infer with the binary tensor extension (inputs and outputs).
    V2Binary,
    /// torchship's simple `POST /predict`.
    Predict,
    /// KServe v2 gRPC `ModelInfer` (raw contents, as tritonclient sends them) over h2c; `--url`
    /// is the gRPC address (`http://host:8001`), requests share connections as HTTP/2 streams.
    Grpc,
}

/// How open-loop requests are spread in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Arrivals {
    /// Exactly 1/rate apart.
    Even,
    /// Exponential gaps (a Poisson process), seeded.
    Poisson,
}

pub use protocol::units::parse_duration;

/// Drive a torchship (or any KServe v2) server and report what it did.
#[derive(Clone, Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Args {
    /// Base URL of the server.
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Model to drive (its v2 metadata shapes the generated payload).
    #[arg(long, env = "LOADTEST_MODEL", default_value = "digits")]
    pub model: String,
    /// Open loop: requests per second, sent on schedule whatever the server does.
    #[arg(long, env = "LOADTEST_RATE", conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Open loop with ramps: DURATION:RATE stages, each ramping linearly from the previous rate
    /// (from 0 at the start) to its own, e.g. 30s:10,2m:200,30s:0. Replaces --rate and --duration.
    #[arg(long, env = "LOADTEST_STAGES", value_parser = crate::schedule::parse_stages_arg, conflicts_with_all = ["rate", "concurrency"])]
    pub stages: Option<crate::schedule::Stages>,
    /// A scenario file (loadtest/scenarios/*.toml) giving the load's shape: rate or stages or
    /// concurrency, duration, arrivals. Its values replace those flags.
    #[arg(long, env = "LOADTEST_SCENARIO")]
    pub scenario: Option<PathBuf>,
    /// Closed loop: this many clients, each sending its next request when the last one answered.
    #[arg(long, env = "LOADTEST_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Open-loop arrivals: even or poisson.
    #[arg(long, env = "LOADTEST_ARRIVALS", value_enum, default_value_t = Arrivals::Even)]
    pub arrivals: Arrivals,
    /// How long to send (e.g. 10s, 2m).
    #[arg(long, env = "LOADTEST_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Stop after this many requests (whichever of this and --duration comes first).
    #[arg(long, env = "LOADTEST_REQUESTS")]
    pub requests: Option<u64>,
    /// Open loop: most requests in flight at once (connections). A request that finds them all
    /// busy is sent late, and its latency still counts from when it should have been sent.
    #[arg(long, env = "LOADTEST_CONNECTIONS", default_value_t = 256)]
    pub connections: usize,
    /// Replace each connection once it is this old (e.g. 10s). Behind a Kubernetes Service a
    /// keep-alive connection stays on the pod it first reached, so without this, pods that the
    /// HPA adds during the run get none of the load. Default: connections live for the run.
    #[arg(long, env = "LOADTEST_CONNECTION_LIFETIME", value_parser = parse_duration)]
    pub connection_lifetime: Option<Duration>,
    /// Endpoint and encoding.
    #[arg(long, env = "LOADTEST_API", value_enum, default_value_t = Api::V2)]
    pub api: Api,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) instead of HTTP/1.1.
    #[arg(long, env = "LOADTEST_H2C")]
    pub h2c: bool,

    /// Concurrent requests that share one HTTP/2 connection as streams (h2c and gRPC; default 1
    /// for --h2c, 100 for --api grpc as gRPC clients multiplex).
    #[arg(long, env = "LOADTEST_STREAMS_PER_CONNECTION", value_parser = clap::value_parser!(u16).range(1..))]
    pub streams_per_connection: Option<u16>,
    /// Per-request timeout; a request that takes longer counts as a `timeout` error.
    #[arg(long, env = "LOADTEST_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Seed for generated payloads and Poisson arrivals.
    #[arg(long, env = "LOADTEST_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON report (summary + per-second series) here.
    #[arg(long, env = "LOADTEST_JSON")]
    pub json: Option<PathBuf>,
    /// Write the HTML report (one self-contained file: inline SVG charts, nothing fetched) here.
    #[arg(long, env = "LOADTEST_HTML")]
    pub html: Option<PathBuf>,
    /// Fail (exit 1) if the corrected p99 latency exceeds this (e.g. 50ms).
    #[arg(long, env = "LOADTEST_MAX_P99", value_parser = parse_duration)]
    pub max_p99: Option<Duration>,
    /// Fail (exit 1) if more than this fraction of requests failed (e.g. 0.01).
    #[arg(long, env = "LOADTEST_MAX_ERROR_RATE")]
    pub max_error_rate: Option<f64>,
    /// Fail (exit 1) if fewer requests per second were answered successfully.
    #[arg(long, env = "LOADTEST_MIN_RPS")]
    pub min_rps: Option<f64>,
    /// Scrape the target's /metrics once a second and report the server's queue (pending
    /// requests), forward passes per second and mean batch size for the model next to the load.
    #[arg(long, env = "LOADTEST_SCRAPE_METRICS")]
    pub scrape_metrics: bool,
    /// Watch this HorizontalPodAutoscaler (and the Deployment it scales) during the run and put
    /// every change of their status on the report's time axis.
    #[arg(long, env = "LOADTEST_WATCH_HPA")]
    pub watch_hpa: Option<String>,
    /// Namespace of the watched HPA.
    #[arg(long, env = "LOADTEST_NAMESPACE", default_value = "torchship")]
    pub namespace: String,
    /// Kubeconfig file for --watch-hpa (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, env = "LOADTEST_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kube context for --watch-hpa (default: the current context).
    #[arg(long, env = "LOADTEST_KUBE_CONTEXT")]
    pub context: Option<String>,
}

/// A scenario file: the shape of a load, named and kept in the repository.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario is for (shown in the report's mode line).
    #[serde(default)]
    pub description: String,
    pub rate: Option<f64>,
    pub stages: Option<String>,
    pub concurrency: Option<usize>,
    pub duration: Option<String>,
    pub arrivals: Option<String>,
}

impl Args {
    /// Applies `--scenario`, if any: its values replace the load-shape flags.
    pub fn with_scenario(mut self) -> Result<Args, String> {
        let Some(path) = self.scenario.clone() else {
            return Ok(self);
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sc: Scenario = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let shapes = [
            sc.rate.is_some(),
            sc.stages.is_some(),
            sc.concurrency.is_some(),
        ];
        if shapes.iter().filter(|x| **x).count() != 1 {
            return Err(format!(
                "{}: give exactly one of rate, stages, concurrency",
                path.display()
            ));
        }
        self.rate = sc.rate;
        self.concurrency = sc.concurrency;
        self.stages = sc
            .stages
            .as_deref()
            .map(crate::schedule::parse_stages_arg)
            .transpose()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(d) = &sc.duration {
            self.duration = parse_duration(d).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(a) = &sc.arrivals {
            self.arrivals = Arrivals::from_str(a, true)
                .map_err(|e| format!("{}: arrivals: {e}", path.display()))?;
        }
        Ok(self)
    }

    /// How long the load is planned to run.
    pub fn planned(&self) -> Duration {
        match &self.stages {
            Some(stages) => stages.0.iter().map(|s| s.duration).sum(),
            None => self.duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn the_documented_interface_parses() {
        let a = Args::try_parse_from([
            "loadtest",
            "--url",
            "http://127.0.0.1:8080",
            "--model",
            "digits",
            "--rate",
            "300",
            "--duration",
            "10s",
            "--json",
            "r.json",
        ])
        .unwrap();
        assert_eq!(a.rate, Some(300.0));
        assert!(Args::try_parse_from(["loadtest", "--rate", "5", "--concurrency", "2"]).is_err());
        let a = Args::try_parse_from([
            "loadtest",
            "--api",
            "v2-binary",
            "--max-p99",
            "50ms",
            "--min-rps",
            "100",
        ])
        .unwrap();
        assert_eq!(a.api, Api::V2Binary);
        assert_eq!(a.max_p99, Some(Duration::from_millis(50)));
        let a = Args::try_parse_from(["loadtest", "--stages", "30s:10,2m:200,30s:0"]).unwrap();
        assert_eq!(a.planned(), Duration::from_secs(180));
        assert!(Args::try_parse_from(["loadtest", "--stages", "30s:10", "--rate", "5"]).is_err());
    }

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let a = Args::parse_from(["loadtest", "--scenario", path.to_str().unwrap()])
                .with_scenario()
                .unwrap();
            assert!(
                a.rate.is_some() || a.stages.is_some() || a.concurrency.is_some(),
                "{}",
                path.display()
            );
            names.push(path.file_stem().unwrap().to_string_lossy().to_string());
        }
        names.sort();
        assert_eq!(names, ["ramp-to-scale", "soak", "spike", "steady"]);
    }
}
