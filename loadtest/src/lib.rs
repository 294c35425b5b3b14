//! torchship load tester: drives an inference server (open or closed loop), watches the HPA while it
//! runs, and reports latency, throughput and replicas on one time axis.
//!
//! This is the walking skeleton: the command-line interface below is the one scripts and docs rely on;
//! the load engine lands with the load-tester issue, and until then `run` says so plainly.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Which endpoint and encoding to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Api {
    V2,
    V2Binary,
    Predict,
}

/// Parses `10s`, `2m`, `500ms`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration such as 10s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("'{s}' has an unknown unit (use ms, s, m, h)")),
    }
}

/// Drive a torchship (or any KServe v2) server and report what it did.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Args {
    /// Base URL of the server.
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Model to drive.
    #[arg(long, env = "LOADTEST_MODEL", default_value = "digits")]
    pub model: String,
    /// Open loop: requests per second.
    #[arg(long, env = "LOADTEST_RATE", conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: concurrent clients.
    #[arg(long, env = "LOADTEST_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// How long to run (e.g. 10s, 2m).
    #[arg(long, env = "LOADTEST_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Stop after this many requests.
    #[arg(long, env = "LOADTEST_REQUESTS")]
    pub requests: Option<u64>,
    /// Endpoint and encoding.
    #[arg(long, env = "LOADTEST_API", value_enum, default_value_t = Api::V2)]
    pub api: Api,
    /// Write the JSON report here.
    #[arg(long, env = "LOADTEST_JSON")]
    pub json: Option<std::path::PathBuf>,
    /// Write the HTML report here.
    #[arg(long, env = "LOADTEST_HTML")]
    pub html: Option<std::path::PathBuf>,
}

/// Why the load test stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The load engine has not been built yet.
    #[error("the load engine is not implemented yet (tracked by the load-tester issue)")]
    NotImplemented,
}

pub fn run(_args: Args) -> Result<(), LoadError> {
    Err(LoadError::NotImplemented)
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
    fn rate_and_concurrency_exclude_each_other() {
        assert!(Args::try_parse_from(["loadtest", "--rate", "5", "--concurrency", "2"]).is_err());
        let a = Args::try_parse_from(["loadtest", "--rate", "300", "--duration", "10s"]).unwrap();
        assert_eq!(a.rate, Some(300.0));
    }
}
