//! `--html FILE`: one self-contained page (inline SVG and CSS, nothing fetched) with the run's charts:
//! offered vs achieved requests/s and latency percentiles over time, plus the summary table; with
//! `--watch-hpa`, replicas (current/desired/ready) and CPU utilisation against the HPA's target
//! on the same time axis, and the timeline as a table.

use std::fmt::Write as _;

use crate::kube_watch::{HpaPoint, Timeline};
use crate::report::Report;

const W: f64 = 760.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart: name, colour, (seconds, value) points.
type Line<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A per-second series as points.
fn per_second(values: Vec<f64>) -> Vec<(f64, f64)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as f64, v))
        .collect()
}

/// A step series (a value holds until the next change), drawn out to `t_end`.
fn steps(points: Vec<(f64, f64)>, t_end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push((t, points[i - 1].1));
        }
        out.push((t, v));
    }
    if let Some(&(t, v)) = out.last() {
        if t < t_end {
            out.push((t_end, v));
        }
    }
    out
}

/// A line chart of several series over the run's time (seconds from 0 to `t_end`).
fn chart(title: &str, unit: &str, t_end: f64, series: &[Line]) -> String {
    let t_end = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(t_end, f64::max)
        .max(1.0);
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |t: f64| PAD + (W - 2.0 * PAD) * t / t_end;
    let y = |v: f64| H - PAD + (2.0 * PAD - H) * v / max;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{PAD}" y="20" class="title">{}</text>"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" class="axis"/>"#,
        H - PAD,
        W - PAD,
        H - PAD
    );
    let _ = write!(
        svg,
        r#"<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" class="axis"/>"#,
        H - PAD
    );
    let _ = write!(
        svg,
        r#"<text x="4" y="{}" class="tick">{max:.1} {unit}</text>"#,
        PAD - 4.0
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" class="tick">{t_end:.0}s</text>"#,
        W - PAD - 10.0,
        H - PAD + 16.0,
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{colour}" class="legend">{}</text>"#,
            W - 170.0,
            PAD + 14.0 * k as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let s = &report.summary;
    let t_end = report.series.len().saturating_sub(1) as f64;
    let server = report.server_metrics.as_ref();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>torchship load test: {model}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
.axis {{ stroke: #888; }} .title {{ font-weight: bold; font-size: 13px; }} .tick, .legend {{ font-size: 11px; }}
</style></head><body>
<h1>Load test: {model}</h1>
<p>{mode} &rarr; {url}</p>
<p>{requests} requests, {ok} ok, error rate {err:.2}%, {late} sent late; offered {offered:.1} req/s, achieved {achieved:.1} req/s over {dur:.1} s.</p>
{latency_table}
{client}
{server}
{kube}
</body></html>
"#,
        model = escape(&s.model),
        mode = escape(&s.mode),
        url = escape(&s.url),
        requests = s.requests,
        ok = s.ok,
        err = 100.0 * s.error_rate,
        late = s.late,
        offered = s.offered_rps,
        achieved = s.achieved_rps,
        dur = s.duration_s,
        latency_table = latency_table(report),
        client = client_charts(report, t_end),
        server = server.map(|m| server_chart(m, t_end)).unwrap_or_default(),
        kube = report
            .kubernetes
            .as_ref()
            .map(|k| kube_section(k, t_end))
            .unwrap_or_default(),
    )
}

/// Corrected and uncorrected percentiles of the whole run.
fn latency_table(report: &Report) -> String {
    let l = &report.summary.latency_ms;
    let mut rows = String::new();
    for (name, p) in [("corrected", &l.corrected), ("uncorrected", &l.uncorrected)] {
        let _ = write!(rows, "<tr><th>{name}</th><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>", p.p50, p.p90, p.p95, p.p99, p.p999, p.max);
    }
    format!("<table><tr><th>latency ms</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>{rows}</table>")
}

/// Requests per second and latency per second, as the client saw them.
fn client_charts(report: &Report, t_end: f64) -> String {
    let col = |f: fn(&crate::stats::Second) -> f64| {
        per_second(report.series.iter().map(f).collect::<Vec<f64>>())
    };
    let rps = chart(
        "requests per second",
        "req/s",
        t_end,
        &[
            ("offered", "#1f77b4", col(|r| r.offered as f64)),
            ("achieved", "#2ca02c", col(|r| r.achieved as f64)),
            ("errors", "#d62728", col(|r| r.errors as f64)),
        ],
    );
    let latency = chart(
        "latency (corrected), per second",
        "ms",
        t_end,
        &[
            ("p50", "#1f77b4", col(|r| r.p50)),
            ("p90", "#ff7f0e", col(|r| r.p90)),
            ("p99", "#d62728", col(|r| r.p99)),
        ],
    );
    format!("{rps}\n{latency}")
}

/// `--scrape-metrics`: the server's queue and batch size.
fn server_chart(m: &crate::report::ServerMetrics, t_end: f64) -> String {
    let col = |f: fn(&crate::scrape::ServerPoint) -> f64| {
        m.points.iter().map(|p| (p.t, f(p))).collect::<Vec<_>>()
    };
    chart(
        "server (/metrics): pending requests and mean batch size",
        "",
        t_end,
        &[
            ("pending", "#9467bd", col(|p| p.pending_requests)),
            ("mean batch", "#8c564b", col(|p| p.mean_batch)),
        ],
    )
}

/// Replicas and CPU charts and the timeline table for `--watch-hpa`.
fn kube_section(k: &Timeline, t_end: f64) -> String {
    format!(
        r#"<h2>Kubernetes: HPA {hpa} &rarr; Deployment {dep}</h2>
{charts}
<table id="hpa-timeline"><tr><th>t (s)</th><th>object</th><th>replicas</th><th>desired</th><th>ready</th><th>CPU / target</th><th>note</th></tr>{rows}</table>"#,
        hpa = escape(&k.hpa),
        dep = escape(k.deployment.as_deref().unwrap_or("?")),
        charts = kube_charts(k, t_end),
        rows = timeline_rows(k),
    )
}

/// Replicas (current, desired, ready) and CPU against its target, as steps over time.
fn kube_charts(k: &Timeline, t_end: f64) -> String {
    let hpa = |f: fn(&HpaPoint) -> Option<f64>| {
        let points = k.hpa_timeline.iter().filter_map(|p| f(p).map(|v| (p.t, v)));
        steps(points.collect(), t_end)
    };
    let ready = k
        .deployment_timeline
        .iter()
        .map(|d| (d.t, d.ready_replicas as f64));
    let replicas = chart(
        "replicas",
        "pods",
        t_end,
        &[
            (
                "current",
                "#1f77b4",
                hpa(|p| Some(p.current_replicas as f64)),
            ),
            (
                "desired",
                "#ff7f0e",
                hpa(|p| Some(p.desired_replicas as f64)),
            ),
            ("ready", "#2ca02c", steps(ready.collect(), t_end)),
        ],
    );
    let cpu = chart(
        "CPU utilisation (% of request, HPA average)",
        "%",
        t_end,
        &[
            ("current", "#d62728", hpa(|p| p.cpu_percent.map(f64::from))),
            (
                "target",
                "#7f7f7f",
                hpa(|p| p.cpu_target_percent.map(f64::from)),
            ),
        ],
    );
    format!("{replicas}\n{cpu}")
}

/// One row per HPA reading, Deployment change and watch error.
fn timeline_rows(k: &Timeline) -> String {
    let pct = |v: Option<i32>| v.map_or("?".to_string(), |v| format!("{v}%"));
    let mut rows = String::new();
    for p in &k.hpa_timeline {
        let _ = write!(
            rows,
            "<tr><td>{:.1}</td><td>HPA</td><td>{}</td><td>{}</td><td></td><td>{} / {}</td><td>{}</td></tr>",
            p.t,
            p.current_replicas,
            p.desired_replicas,
            pct(p.cpu_percent),
            pct(p.cpu_target_percent),
            escape(p.blocked.as_deref().unwrap_or(""))
        );
    }
    for d in &k.deployment_timeline {
        let _ = write!(
            rows,
            "<tr><td>{:.1}</td><td>Deployment</td><td>{}</td><td></td><td>{}</td><td></td><td></td></tr>",
            d.t, d.replicas, d.ready_replicas
        );
    }
    for (t, e) in &k.errors {
        let _ = write!(
            rows,
            "<tr><td>{t:.1}</td><td>error</td><td colspan=\"5\">{}</td></tr>",
            escape(e)
        );
    }
    rows
}
