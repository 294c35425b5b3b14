//! `loadtest compare A.json B.json [...]`: runs side by side from their JSON reports (`--json`),
//! e.g. HTTP against gRPC, or before against after a change: throughput, errors and the latency
//! percentiles of each run, and each run's ratio to the first; for runs that watched their HPA
//! through a step in the load (CPU against queue autoscaling), how each autoscaler met the step.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::autoscale::{self, Scaling};
use crate::html::{self, escape};
use crate::report::{Report, Summary};
use crate::stats::Percentiles;

/// `loadtest compare`'s arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "loadtest compare",
    about = "Compare the JSON reports (--json) of two or more runs"
)]
pub struct CompareArgs {
    /// The reports, the first one the baseline the others are divided by.
    #[arg(required = true, num_args = 2..)]
    pub reports: Vec<PathBuf>,
    /// Also write the comparison as one HTML page (the runs' charts overlaid) here.
    #[arg(long, env = "LOADTEST_COMPARE_HTML")]
    pub html: Option<PathBuf>,
}

/// One report, named after its file.
#[derive(Debug)]
pub struct Run {
    name: String,
    report: Report,
}

/// Reads a report written by `--json`; the error names the file and what is wrong.
pub fn load(path: &Path) -> Result<Run, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a loadtest --json report: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Run { name, report })
}

/// A row's value in each run.
type Row = (String, Box<dyn Fn(&Summary) -> f64>);

fn rows() -> Vec<Row> {
    let mut rows: Vec<Row> = vec![
        ("achieved req/s".into(), Box::new(|s| s.achieved_rps)),
        ("requests".into(), Box::new(|s| s.requests as f64)),
        ("error rate %".into(), Box::new(|s| 100.0 * s.error_rate)),
    ];
    type Pick = fn(&Percentiles) -> f64;
    let picks: [(&str, &str, Pick); 10] = [
        ("p50 ms", "corrected", |p| p.p50),
        ("p90 ms", "corrected", |p| p.p90),
        ("p99 ms", "corrected", |p| p.p99),
        ("p99.9 ms", "corrected", |p| p.p999),
        ("max ms", "corrected", |p| p.max),
        ("p50 ms", "uncorrected", |p| p.p50),
        ("p90 ms", "uncorrected", |p| p.p90),
        ("p99 ms", "uncorrected", |p| p.p99),
        ("p99.9 ms", "uncorrected", |p| p.p999),
        ("max ms", "uncorrected", |p| p.max),
    ];
    for (label, which, pick) in picks {
        let corrected = which == "corrected";
        rows.push((
            format!("{label} ({which})"),
            Box::new(move |s| {
                let l = &s.latency_ms;
                pick(if corrected {
                    &l.corrected
                } else {
                    &l.uncorrected
                })
            }),
        ));
    }
    rows
}

/// The comparison as text: the runs (letters A, B, ...), then one row per measure with each run's
/// value and each later run's ratio to A ("-" where A is 0).
pub fn text(runs: &[Run]) -> String {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        let s = &r.report.summary;
        let _ = writeln!(
            out,
            "{} = {}: {} -> {} (model {})",
            letter(i),
            r.name,
            s.mode,
            s.url,
            s.model
        );
    }
    let _ = write!(out, "{:<26}", "");
    for i in 0..runs.len() {
        let _ = write!(out, "{:>12}", letter(i));
    }
    for i in 1..runs.len() {
        let _ = write!(out, "{:>8}", format!("{}/A", letter(i)));
    }
    out.push('\n');
    for (label, values, ratios) in table(runs) {
        let _ = write!(out, "{label:<26}");
        for v in &values {
            let _ = write!(out, "{v:>12.2}");
        }
        for r in &ratios {
            let _ = write!(out, "{r:>8}");
        }
        out.push('\n');
    }
    out
}

/// Each measure's label, its value in every run, and each later run's ratio to A.
/// With every run watching its HPA through a step in the load, [`autoscale`]'s rows follow.
fn table(runs: &[Run]) -> Vec<(String, Vec<f64>, Vec<String>)> {
    let with_ratios = |label: String, values: Vec<f64>| {
        let ratios = values[1..].iter().map(|v| ratio(values[0], *v)).collect();
        (label, values, ratios)
    };
    let mut table: Vec<_> = rows()
        .into_iter()
        .map(|(label, value)| {
            with_ratios(
                label,
                runs.iter().map(|r| value(&r.report.summary)).collect(),
            )
        })
        .collect();
    let scaling: Option<Vec<Scaling>> =
        runs.iter().map(|r| autoscale::scaling(&r.report)).collect();
    for (label, value) in scaling.iter().flat_map(|_| autoscale::rows()) {
        let values = scaling.iter().flatten().map(value).collect();
        table.push(with_ratios(label.to_string(), values));
    }
    table
}

/// The run's letter: A, B, ...
fn letter(i: usize) -> char {
    char::from(b'A' + (i % 26) as u8)
}

/// `v / a` to two places, "-" where A is 0 (the ratio would mean nothing).
fn ratio(a: f64, v: f64) -> String {
    match a {
        a if a > 0.0 => format!("{:.2}", v / a),
        _ => "-".into(),
    }
}

/// `--html`: the runs' charts overlaid (each run one colour; offered, uncorrected dashed), the
/// table of differences and each run's metadata.
pub fn html(runs: &[Run]) -> Result<String, String> {
    let on_page: Vec<html::Run> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| html::Run {
            label: letter(i).to_string(),
            report: &r.report,
        })
        .collect();
    let mut head = String::from("<tr><th></th>");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(head, "<th>{} = {}</th>", letter(i), escape(&r.name));
    }
    for i in 1..runs.len() {
        let _ = write!(head, "<th>{}/A</th>", letter(i));
    }
    head.push_str("</tr>");
    let mut cells = String::new();
    for (label, values, ratios) in table(runs) {
        let _ = write!(cells, "<tr><th>{}</th>", escape(&label));
        for v in &values {
            let _ = write!(cells, "<td>{v:.2}</td>");
        }
        for r in &ratios {
            let _ = write!(cells, "<td>{r}</td>");
        }
        cells.push_str("</tr>");
    }
    let body = format!(
        r#"<h1>Load test comparison: {n} runs</h1>
<table id="differences">{head}{cells}</table>
{charts}
<h2>Runs</h2>{meta}"#,
        n = runs.len(),
        charts = html::charts(&on_page)?,
        meta = html::meta_table(&on_page),
    );
    Ok(html::page("torchship load test comparison", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, rps: f64, p50: f64, errors: f64) -> Run {
        let p = |x: f64| {
            serde_json::to_value(Percentiles {
                p50: x,
                p90: 2.0 * x,
                p95: 2.5 * x,
                p99: 3.0 * x,
                p999: 4.0 * x,
                max: 5.0 * x,
                mean: x,
            })
            .unwrap()
        };
        // As an older report has it: no metadata, no spectrum (both default).
        let report = serde_json::json!({
            "summary": {
                "url": "http://127.0.0.1:8080", "model": "digits",
                "mode": "closed loop, 32 clients", "requests": 1000, "ok": 1000,
                "errors": {}, "error_rate": errors, "duration_s": 1.0, "offered_rps": rps,
                "achieved_rps": rps, "late": 0,
                "latency_ms": {"corrected": p(p50), "uncorrected": p(p50 / 2.0)},
            },
            "series": [],
        });
        Run {
            name: name.into(),
            report: serde_json::from_value(report).unwrap(),
        }
    }

    #[test]
    fn each_run_is_divided_by_the_first() {
        let out = text(&[
            run("http.json", 1000.0, 1.0, 0.0),
            run("grpc.json", 800.0, 1.5, 0.01),
        ]);
        assert!(
            out.starts_with("A = http.json: closed loop, 32 clients"),
            "{out}"
        );
        assert!(out.contains("B = grpc.json"), "{out}");
        let line = |label: &str| {
            out.lines()
                .find(|l| l.starts_with(label))
                .unwrap()
                .to_string()
        };
        let rps: Vec<String> = line("achieved req/s")
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(rps[2..], ["1000.00", "800.00", "0.80"], "{out}");
        assert!(line("p50 ms (corrected)").ends_with("1.50"), "{out}");
        assert!(line("p50 ms (uncorrected)").contains("0.75"), "{out}");
        // No errors in A: the ratio would mean nothing.
        assert!(line("error rate %").trim_end().ends_with('-'), "{out}");
    }
}
