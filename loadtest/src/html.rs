//! `--html FILE`: one self-contained page (inline SVG and CSS, nothing fetched) with the run's charts:
//! offered vs achieved requests/s and latency percentiles over time, plus the summary table.

use std::fmt::Write as _;

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

/// A line chart of several series over the run's seconds.
fn chart(title: &str, unit: &str, series: &[(&str, &str, Vec<f64>)]) -> String {
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(2);
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n - 1) as f64;
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
        r#"<text x="{}" y="{}" class="tick">{}s</text>"#,
        W - PAD - 10.0,
        H - PAD + 16.0,
        n - 1
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
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
    let col =
        |f: fn(&crate::stats::Second) -> f64| report.series.iter().map(f).collect::<Vec<f64>>();
    let rps = chart(
        "requests per second",
        "req/s",
        &[
            ("offered", "#1f77b4", col(|r| r.offered as f64)),
            ("achieved", "#2ca02c", col(|r| r.achieved as f64)),
            ("errors", "#d62728", col(|r| r.errors as f64)),
        ],
    );
    let latency = chart(
        "latency (corrected), per second",
        "ms",
        &[
            ("p50", "#1f77b4", col(|r| r.p50)),
            ("p90", "#ff7f0e", col(|r| r.p90)),
            ("p99", "#d62728", col(|r| r.p99)),
        ],
    );
    let mut rows = String::new();
    for (name, p) in [
        ("corrected", &s.latency_ms.corrected),
        ("uncorrected", &s.latency_ms.uncorrected),
    ] {
        let _ = write!(rows, "<tr><th>{name}</th><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>", p.p50, p.p90, p.p95, p.p99, p.p999, p.max);
    }
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
<table><tr><th>latency ms</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>{rows}</table>
{rps}
{latency}
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
    )
}
