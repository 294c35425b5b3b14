//! The report: a text summary for people, JSON for programs, and the pass/fail thresholds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cli::Args;
use crate::kube_watch::Timeline;
use crate::scrape::ServerPoint;
use crate::stats::{spectrum, Collector, Percentiles, Second, SpectrumPoint};

/// Latency percentiles, corrected (from the intended send time) and uncorrected (from the actual send).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    pub corrected: Percentiles,
    pub uncorrected: Percentiles,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub url: String,
    pub model: String,
    pub mode: String,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_rate: f64,
    pub duration_s: f64,
    pub offered_rps: f64,
    pub achieved_rps: f64,
    /// Open loop: requests that left more than 1 ms after their intended time.
    pub late: u64,
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub summary: Summary,
    pub series: Vec<Second>,
    /// How the run was made (absent from reports written before it was added).
    #[serde(default)]
    pub meta: Meta,
    /// The whole run's latency percentile spectrum, corrected and uncorrected.
    #[serde(default)]
    pub spectrum: Spectrum,
    /// `--watch-hpa`: the HPA and Deployment timelines, on the series' time axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Timeline>,
    /// `--scrape-metrics`: the server's view, once a second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<ServerMetrics>,
}

/// The run's metadata, for the report's header and for telling runs apart in `compare`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    /// The load tester's command line.
    pub command: Vec<String>,
    pub loadtest_version: String,
    /// The server's name and version from its v2 server metadata (absent if it did not answer).
    pub server: Option<String>,
    pub api: String,
    /// When the load started (HTTP date, UTC).
    pub date: String,
    pub thresholds: Vec<Threshold>,
}

/// One pass/fail threshold (`--max-p99`, `--max-error-rate`, `--min-rps`) and how the run did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Threshold {
    pub flag: String,
    pub limit: f64,
    pub measured: f64,
    /// What failed, in words; absent when the threshold passed.
    pub failure: Option<String>,
}

/// Percentile spectra of the whole run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spectrum {
    pub corrected: Vec<SpectrumPoint>,
    pub uncorrected: Vec<SpectrumPoint>,
}

/// What `--scrape-metrics` read from the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerMetrics {
    pub points: Vec<ServerPoint>,
    /// Failed scrapes, each distinct error once.
    pub errors: Vec<String>,
}

impl Report {
    /// Writes the `--json` and `--html` files the flags ask for; the error names the file.
    pub fn write_files(&self, args: &Args) -> Result<(), String> {
        let write = |path: &std::path::Path, bytes: Vec<u8>| {
            std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
        };
        if let Some(path) = &args.json {
            let json = serde_json::to_vec_pretty(self)
                .map_err(|e| format!("serialising the report: {e}"))?;
            write(path, json)?;
        }
        if let Some(path) = &args.html {
            write(path, crate::html::render(self)?.into_bytes())?;
        }
        Ok(())
    }

    pub fn new(args: &Args, mut c: Collector, start: tokio::time::Instant) -> Report {
        let (corrected, uncorrected) = c.finish();
        let spectrum = Spectrum {
            corrected: spectrum(&c.corrected),
            uncorrected: spectrum(&c.uncorrected),
        };
        let started = std::time::SystemTime::now() - start.elapsed();
        let ok = c.classes.get("ok").copied().unwrap_or(0);
        let requests: u64 = c.classes.values().sum();
        let errors: BTreeMap<String, u64> = c
            .classes
            .iter()
            .filter(|(k, _)| *k != "ok")
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let duration_s = (c.last_done - start).as_secs_f64().max(1e-9);
        let window = args.planned().as_secs_f64().min(duration_s).max(1e-9);
        let mode = match (args.rate, &args.stages, args.concurrency) {
            (Some(r), _, _) => format!(
                "open loop, {r} req/s ({:?} arrivals), {} connections",
                args.arrivals, args.connections
            ),
            (None, Some(st), _) => format!(
                "open loop, stages {} ({:?} arrivals), {} connections",
                st.0.iter()
                    .map(|s| format!("{}s:{}", s.duration.as_secs_f64(), s.target))
                    .collect::<Vec<_>>()
                    .join(","),
                args.arrivals,
                args.connections
            ),
            (None, None, c) => format!("closed loop, {} clients", c.unwrap_or(1)),
        };
        let mut report = Report {
            summary: Summary {
                url: args.url.clone(),
                model: args.model.clone(),
                mode,
                requests,
                ok,
                error_rate: if requests == 0 {
                    0.0
                } else {
                    (requests - ok) as f64 / requests as f64
                },
                errors,
                duration_s,
                offered_rps: requests as f64 / window,
                achieved_rps: ok as f64 / duration_s,
                late: c.late,
                latency_ms: Latency {
                    corrected,
                    uncorrected,
                },
            },
            series: c.series,
            meta: Meta {
                command: std::env::args().collect(),
                loadtest_version: env!("CARGO_PKG_VERSION").into(),
                server: None,
                api: format!("{:?}", args.api).to_lowercase(),
                date: httpdate::fmt_http_date(started),
                thresholds: Vec::new(),
            },
            spectrum,
            kubernetes: None,
            server_metrics: None,
        };
        report.meta.thresholds = report.thresholds(args);
        report
    }

    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(out, "{} -> {} (model {})", s.mode, s.url, s.model);
        let _ = writeln!(
            out,
            "requests {}  ok {}  errors {:.2}% {:?}  late {}",
            s.requests,
            s.ok,
            100.0 * s.error_rate,
            s.errors,
            s.late
        );
        let _ = writeln!(
            out,
            "duration {:.2} s  offered {:.1} req/s  achieved {:.1} req/s",
            s.duration_s, s.offered_rps, s.achieved_rps
        );
        let _ = writeln!(
            out,
            "latency ms       p50      p90      p95      p99    p99.9      max"
        );
        for (name, p) in [
            ("corrected", &s.latency_ms.corrected),
            ("uncorrected", &s.latency_ms.uncorrected),
        ] {
            let _ = writeln!(
                out,
                "  {name:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                p.p50, p.p90, p.p95, p.p99, p.p999, p.max
            );
        }
        if let Some(m) = &self.server_metrics {
            out.push_str(&server_text(m));
        }
        if let Some(k) = &self.kubernetes {
            out.push_str(&kube_text(k));
        }
        out
    }

    /// The thresholds that failed, in words (empty: pass).
    pub fn check(&self, args: &Args) -> Vec<String> {
        self.thresholds(args)
            .into_iter()
            .filter_map(|t| t.failure)
            .collect()
    }

    /// Each threshold the flags set, with the measured value and, if it failed, why.
    pub fn thresholds(&self, args: &Args) -> Vec<Threshold> {
        let s = &self.summary;
        let mut out = Vec::new();
        let mut add = |flag: &str, limit: f64, measured: f64, failed: bool, why: String| {
            out.push(Threshold {
                flag: flag.into(),
                limit,
                measured,
                failure: failed.then_some(why),
            })
        };
        if let Some(max) = args.max_p99 {
            let (max_ms, p99) = (max.as_secs_f64() * 1e3, s.latency_ms.corrected.p99);
            let why = format!("p99 latency {p99:.2} ms is above --max-p99 {max_ms} ms");
            add("--max-p99 (ms)", max_ms, p99, p99 > max_ms, why);
        }
        if let Some(max) = args.max_error_rate {
            let why = format!(
                "error rate {:.4} is above --max-error-rate {max}",
                s.error_rate
            );
            add(
                "--max-error-rate",
                max,
                s.error_rate,
                s.error_rate > max,
                why,
            );
        }
        if let Some(min) = args.min_rps {
            let why = format!(
                "achieved {:.1} req/s is below --min-rps {min}",
                s.achieved_rps
            );
            add("--min-rps", min, s.achieved_rps, s.achieved_rps < min, why);
        }
        out
    }
}

/// The HPA and Deployment timelines, merged in time order.
fn kube_text(k: &Timeline) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "HPA {} scaling Deployment {}",
        k.hpa,
        k.deployment.as_deref().unwrap_or("(unknown)")
    );
    let _ = writeln!(out, "  {:>7}  {:<46} Deployment", "t", "HPA");
    let mut rows: Vec<(f64, String)> = Vec::new();
    for h in &k.hpa_timeline {
        let mut line = format!(
            "replicas {}/{} (min {} max {})  {}",
            h.current_replicas,
            h.desired_replicas,
            h.min_replicas,
            h.max_replicas,
            h.reading()
        );
        if let Some(b) = &h.blocked {
            line.push_str(&format!("  [{b}]"));
        }
        rows.push((h.t, line));
    }
    for d in &k.deployment_timeline {
        rows.push((
            d.t,
            format!(
                "{:<46} ready {}/{} updated {} available {}",
                "", d.ready_replicas, d.replicas, d.updated_replicas, d.available_replicas
            ),
        ));
    }
    for (t, e) in &k.errors {
        rows.push((*t, format!("! {e}")));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, line) in rows {
        let _ = writeln!(out, "  {t:>6.1}s  {line}");
    }
    out
}

/// One line of the server's view: its busiest second and the run's mean batch.
fn server_text(m: &ServerMetrics) -> String {
    let mut out = String::new();
    let max = |f: fn(&ServerPoint) -> f64| m.points.iter().map(f).fold(0.0f64, f64::max);
    let passes: f64 = m.points.iter().map(|p| p.executions_per_s).sum();
    let rows: f64 = m
        .points
        .iter()
        .map(|p| p.executions_per_s * p.mean_batch)
        .sum();
    let _ = writeln!(
        out,
        "server /metrics ({} scrapes): pending max {:.0}  forward passes max {:.0}/s  mean batch {:.1}",
        m.points.len(),
        max(|p| p.pending_requests),
        max(|p| p.executions_per_s),
        if passes > 0.0 { rows / passes } else { 0.0 }
    );
    for e in &m.errors {
        let _ = writeln!(out, "  ! {e}");
    }
    out
}
