//! `--html FILE` and `loadtest compare --html`: one self-contained page (inline SVG, CSS and a few
//! lines of script for hover; nothing fetched). The charts, in the order people read them:
//! 1. the headline: offered and achieved requests/s with the replicas (current, desired, ready) on
//!    a second axis, and below it on the same time axis the HPA's CPU utilisation (or, scaling
//!    on an External/Pods metric such as KEDA's queue trigger, that metric) against its target,
//!    scaling events marked (without `--watch-hpa`: the load alone);
//! 2. latency percentiles over time, corrected (solid) and uncorrected (dashed);
//! 3. errors per second by class;
//! 4. with `--scrape-metrics`, the server's pending requests and mean batch size;
//! 5. the whole run's latency percentile spectrum (log "1 in N" axis).
//!
//! Then the run's metadata, thresholds, latency table and the HPA timeline as a table.

use std::fmt::Write as _;

use crate::chart::{self, Panel, Series, TimeChart};
use crate::kube_watch::Timeline;
use crate::report::Report;
use crate::stats::Second;

pub use crate::chart::escape;

/// One run on a page: its letter in a comparison ("" alone) and its report.
pub struct Run<'a> {
    pub label: String,
    pub report: &'a Report,
}

impl Run<'_> {
    /// A series name, prefixed with the run's letter in a comparison.
    fn name(&self, what: &str) -> String {
        match self.label.as_str() {
            "" => what.to_string(),
            l => format!("{l} {what}"),
        }
    }
}

const BLUE: (u8, u8, u8) = (31, 119, 180);
const ORANGE: (u8, u8, u8) = (255, 127, 14);
const GREEN: (u8, u8, u8) = (44, 160, 44);
const RED: (u8, u8, u8) = (214, 39, 40);
const PURPLE: (u8, u8, u8) = (148, 103, 189);
const BROWN: (u8, u8, u8) = (140, 86, 75);
const GREY: (u8, u8, u8) = (127, 127, 127);
const PALETTE: [(u8, u8, u8); 8] = [
    BLUE,
    ORANGE,
    GREEN,
    RED,
    PURPLE,
    BROWN,
    (227, 119, 194),
    (23, 190, 207),
];

/// A per-second column as points.
fn per_second(series: &[Second], f: impl Fn(&Second) -> f64) -> Vec<(f64, f64)> {
    series.iter().map(|s| (s.t as f64, f(s))).collect()
}

/// A step series (a value holds until the next change), drawn out to `t_end`.
fn steps(points: impl Iterator<Item = (f64, f64)>, t_end: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (t, v) in points {
        if let Some(&(_, prev)) = out.last() {
            out.push((t, prev));
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

fn t_end(runs: &[Run]) -> f64 {
    runs.iter()
        .map(|r| {
            let k = r.report.kubernetes.as_ref();
            let last_watch = k
                .and_then(|k| k.hpa_timeline.last().map(|p| p.t))
                .unwrap_or(0.0);
            (r.report.series.len().saturating_sub(1) as f64).max(last_watch)
        })
        .fold(1.0, f64::max)
}

/// The HPA's changes of desired replicas: "3 → 7" at the time it decided.
fn scaling_events(k: &Timeline) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for w in k.hpa_timeline.windows(2) {
        if w[1].desired_replicas != w[0].desired_replicas {
            let label = format!("{} → {}", w[0].desired_replicas, w[1].desired_replicas);
            out.push((w[1].t, label));
        }
    }
    out
}

/// The replicas (right axis of the headline) and the CPU panel, for one watched run.
fn kube_series(k: &Timeline, t_end: f64) -> (Vec<Series>, Panel) {
    let hpa = |f: fn(&crate::kube_watch::HpaPoint) -> Option<f64>| {
        steps(
            k.hpa_timeline.iter().filter_map(|p| f(p).map(|v| (p.t, v))),
            t_end,
        )
    };
    let ready = k
        .deployment_timeline
        .iter()
        .map(|d| (d.t, d.ready_replicas as f64));
    let replicas = vec![
        Series::new("replicas current", "pods", ORANGE)
            .right()
            .points(hpa(|p| Some(p.current_replicas as f64))),
        Series::new("replicas desired", "pods", PURPLE)
            .right()
            .dashed()
            .points(hpa(|p| Some(p.desired_replicas as f64))),
        Series::new("replicas ready", "pods", BROWN)
            .right()
            .points(steps(ready, t_end)),
    ];
    if let Some(name) = k.hpa_timeline.iter().find_map(|p| p.metric.clone()) {
        let metric = Panel {
            y_desc: format!("{name} (per pod)"),
            y2_desc: None,
            series: vec![
                Series::new(name.clone(), "per pod", RED).points(hpa(|p| p.metric_value)),
                Series::new(format!("{name} target"), "per pod", GREY)
                    .dashed()
                    .points(hpa(|p| p.metric_target)),
            ],
        };
        return (replicas, metric);
    }
    let cpu = Panel {
        y_desc: "CPU (% of request)".into(),
        y2_desc: None,
        series: vec![
            Series::new("CPU utilisation", "%", RED).points(hpa(|p| p.cpu_percent.map(f64::from))),
            Series::new("CPU target", "%", GREY)
                .dashed()
                .points(hpa(|p| p.cpu_target_percent.map(f64::from))),
        ],
    };
    (replicas, cpu)
}

/// The headline: load (and, watched, replicas and CPU) on one time axis.
fn headline(runs: &[Run]) -> Result<String, String> {
    let t_end = t_end(runs);
    let mut upper = Panel {
        y_desc: "requests per second".into(),
        ..Panel::default()
    };
    let (mut lower, mut marks) = (None, Vec::new());
    for (i, r) in runs.iter().enumerate() {
        let (offered, achieved) = match runs.len() {
            1 => (BLUE, GREEN),
            _ => (PALETTE[i % 8], PALETTE[i % 8]),
        };
        let s = &r.report.series;
        upper.series.extend([
            Series::new(r.name("offered"), "req/s", offered)
                .dashed()
                .points(per_second(s, |x| x.offered as f64)),
            Series::new(r.name("achieved"), "req/s", achieved)
                .points(per_second(s, |x| x.achieved as f64)),
        ]);
        if let (1, Some(k)) = (runs.len(), &r.report.kubernetes) {
            let (replicas, cpu) = kube_series(k, t_end);
            upper.y2_desc = Some("replicas (pods)".into());
            upper.series.extend(replicas);
            lower = Some(cpu);
            marks = scaling_events(k);
        } else if let Some(k) = &r.report.kubernetes {
            // Several runs (loadtest compare, e.g. CPU against queue autoscaling): each one's
            // ready replicas, in its colour, on the replicas axis.
            let ready = k
                .deployment_timeline
                .iter()
                .map(|d| (d.t, d.ready_replicas as f64));
            upper.y2_desc = Some("replicas ready (pods)".into());
            upper.series.push(
                Series::new(r.name("replicas ready"), "pods", achieved)
                    .right()
                    .dashed()
                    .points(steps(ready, t_end)),
            );
        }
    }
    let title = match lower {
        Some(_) => "Load, replicas and the HPA's metric against its target",
        None => "Load: requests per second offered and achieved",
    };
    TimeChart {
        id: "headline",
        title: title.into(),
        t_end,
        upper,
        lower,
        marks,
    }
    .html()
}

/// Latency percentiles per second: corrected solid, uncorrected dashed.
fn latency(runs: &[Run]) -> Result<String, String> {
    type Pick = fn(&Second) -> f64;
    type Rgb = (u8, u8, u8);
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let picks: Vec<(&str, Pick, Pick, Rgb)> = match runs.len() {
            1 => vec![
                ("p50", |s| s.p50, |s| s.p50_uncorrected, BLUE),
                ("p90", |s| s.p90, |s| s.p90_uncorrected, ORANGE),
                ("p99", |s| s.p99, |s| s.p99_uncorrected, RED),
            ],
            _ => vec![("p99", |s| s.p99, |s| s.p99_uncorrected, PALETTE[i % 8])],
        };
        let s = &r.report.series;
        for (p, corrected, uncorrected, colour) in picks {
            series.push(
                Series::new(r.name(&format!("{p} corrected")), "ms", colour)
                    .points(per_second(s, corrected)),
            );
            series.push(
                Series::new(r.name(&format!("{p} uncorrected")), "ms", colour)
                    .dashed()
                    .points(per_second(s, uncorrected)),
            );
        }
    }
    let panel = Panel {
        y_desc: "latency (ms)".into(),
        y2_desc: None,
        series,
    };
    TimeChart::single(
        "latency",
        "Latency percentiles per second (corrected: from the intended send time)",
        t_end(runs),
        panel,
    )
    .html()
}

/// Errors per second, one line per class (one line of zeros when there were none).
fn errors(runs: &[Run]) -> Result<String, String> {
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let s = &r.report.series;
        let mut classes: Vec<&String> = s.iter().flat_map(|x| x.errors_by_class.keys()).collect();
        classes.sort();
        classes.dedup();
        if classes.is_empty() {
            series.push(
                Series::new(r.name("errors (none)"), "errors/s", PALETTE[(i + 3) % 8])
                    .points(per_second(s, |x| x.errors as f64)),
            );
        }
        for (k, class) in classes.into_iter().enumerate() {
            let count = |x: &Second| x.errors_by_class.get(class).copied().unwrap_or(0) as f64;
            series.push(
                Series::new(r.name(class), "errors/s", PALETTE[(i + k + 3) % 8])
                    .points(per_second(s, count)),
            );
        }
    }
    let panel = Panel {
        y_desc: "errors per second".into(),
        y2_desc: None,
        series,
    };
    TimeChart::single("errors", "Errors per second by class", t_end(runs), panel).html()
}

/// `--scrape-metrics`: the server's queue (left) and mean batch size (right).
fn server(runs: &[Run]) -> Result<String, String> {
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Some(m) = &r.report.server_metrics else {
            continue;
        };
        let (queue, batch) = match runs.len() {
            1 => (PURPLE, BROWN),
            _ => (PALETTE[i % 8], PALETTE[i % 8]),
        };
        let col =
            |f: fn(&crate::scrape::ServerPoint) -> f64| m.points.iter().map(move |p| (p.t, f(p)));
        series.push(
            Series::new(r.name("pending requests"), "requests", queue)
                .points(col(|p| p.pending_requests).collect()),
        );
        series.push(
            Series::new(r.name("mean batch size"), "rows", batch)
                .right()
                .dashed()
                .points(col(|p| p.mean_batch).collect()),
        );
    }
    if series.is_empty() {
        return Ok(String::new());
    }
    let panel = Panel {
        y_desc: "pending requests".into(),
        y2_desc: Some("mean batch size (rows)".into()),
        series,
    };
    TimeChart::single(
        "server",
        "Server (/metrics): pending requests and mean batch size",
        t_end(runs),
        panel,
    )
    .html()
}

/// The whole run's percentile spectrum, corrected solid and uncorrected dashed.
fn spectrum(runs: &[Run]) -> Result<String, String> {
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let colour = match runs.len() {
            1 => BLUE,
            _ => PALETTE[i % 8],
        };
        let sp = &r.report.spectrum;
        let pts =
            |v: &[crate::stats::SpectrumPoint]| v.iter().map(|p| (p.percentile, p.ms)).collect();
        series.push(Series::new(r.name("corrected"), "ms", colour).points(pts(&sp.corrected)));
        let uncorrected = match runs.len() {
            1 => ORANGE,
            _ => colour,
        };
        series.push(
            Series::new(r.name("uncorrected"), "ms", uncorrected)
                .dashed()
                .points(pts(&sp.uncorrected)),
        );
    }
    chart::spectrum(
        "spectrum",
        "Latency by percentile, whole run (HdrHistogram's spectrum)",
        &series,
    )
}

/// Every chart of the runs, in reading order.
pub fn charts(runs: &[Run]) -> Result<String, String> {
    let parts = [
        headline(runs)?,
        latency(runs)?,
        errors(runs)?,
        server(runs)?,
        spectrum(runs)?,
    ];
    Ok(parts.concat())
}

/// The run's metadata and thresholds as a table.
pub fn meta_table(runs: &[Run]) -> String {
    let mut rows = String::new();
    for r in runs {
        let (m, s) = (&r.report.meta, &r.report.summary);
        let thresholds: Vec<String> = m
            .thresholds
            .iter()
            .map(|t| match &t.failure {
                None => format!("{} {}: passed ({:.2})", t.flag, t.limit, t.measured),
                Some(why) => format!("{} {}: FAILED, {why}", t.flag, t.limit),
            })
            .collect();
        let cells = [
            r.label.clone(),
            m.command.join(" "),
            m.loadtest_version.clone(),
            m.server.clone().unwrap_or_else(|| "unknown".into()),
            s.url.clone(),
            s.model.clone(),
            m.api.clone(),
            s.mode.clone(),
            m.date.clone(),
            format!("{:.1} s", s.duration_s),
            match thresholds.is_empty() {
                true => "none set".into(),
                false => thresholds.join("; "),
            },
        ];
        rows.push_str("<tr>");
        for c in cells {
            let _ = write!(rows, "<td>{}</td>", escape(&c));
        }
        rows.push_str("</tr>");
    }
    format!(
        r#"<table id="meta" class="text"><tr><th>run</th><th>command</th><th>loadtest</th><th>server</th><th>target</th><th>model</th><th>API</th><th>load</th><th>date</th><th>duration</th><th>thresholds</th></tr>{rows}</table>"#
    )
}

/// The page around `body`, with the styles and the hover script.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>{STYLE}</style></head><body>
{body}
<script>{SCRIPT}</script>
</body></html>
"#,
        title = escape(title),
    )
}

const STYLE: &str = r#"
body { font: 14px system-ui, sans-serif; margin: 1.5em auto; padding: 0 1.5em; color: #222; max-width: 1600px; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
table.text td { text-align: left; max-width: 40em; overflow-wrap: anywhere; }
figure.chart { margin: 1.5em 0; } figcaption { font-weight: 600; font-size: 15px; margin-bottom: .4em; }
figure.chart .body { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure.chart .plot { position: relative; flex: 1 1 640px; min-width: 320px; max-width: 1200px; }
figure.chart svg { width: 100%; height: auto; display: block; }
ul.legend { list-style: none; margin: 0; padding: 0; flex: 0 0 14em; font-size: 13px; }
ul.legend li { margin: .3em 0; display: flex; align-items: center; gap: .5em; }
.swatch { display: inline-block; width: 2.2em; border-top: 3px solid; } .swatch.dashed { border-top-style: dashed; }
.tip { position: absolute; pointer-events: none; background: rgba(255,255,255,.95); border: 1px solid #999; padding: 4px 6px; font-size: 12px; white-space: pre; }
"#;

/// Hover: the nearest point of every series to the pointer's x, from the positions plotters drew.
const SCRIPT: &str = r#"
for (const fig of document.querySelectorAll('figure.chart')) {
  const data = JSON.parse(fig.querySelector('.chart-data').textContent);
  const svg = fig.querySelector('svg'), tip = fig.querySelector('.tip');
  const cursor = document.createElementNS('http://www.w3.org/2000/svg', 'line');
  cursor.setAttribute('stroke', '#555'); cursor.setAttribute('stroke-dasharray', '3 3');
  cursor.setAttribute('y1', 0); cursor.setAttribute('y2', svg.viewBox.baseVal.height);
  cursor.style.display = 'none'; svg.appendChild(cursor);
  const fmt = v => Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
  svg.addEventListener('mousemove', e => {
    const at = new DOMPoint(e.clientX, e.clientY).matrixTransform(svg.getScreenCTM().inverse());
    const rows = []; let xv = null;
    for (const s of data.series) {
      let near = null;
      for (const p of s.points) if (!near || Math.abs(p[0] - at.x) < Math.abs(near[0] - at.x)) near = p;
      const [first, last] = [s.points[0], s.points[s.points.length - 1]];
      if (!near || at.x < first[0] - 30 || at.x > last[0] + 30) continue;
      if (xv === null) xv = near[2];
      rows.push(`${s.name}: ${fmt(near[3])} ${s.unit}`);
    }
    if (!rows.length) { tip.hidden = true; cursor.style.display = 'none'; return; }
    const x = data.x_unit === 's' ? `t = ${fmt(xv)} s` : `${fmt(xv)}th percentile`;
    tip.textContent = [x, ...rows].join('\n'); tip.hidden = false;
    cursor.setAttribute('x1', at.x); cursor.setAttribute('x2', at.x); cursor.style.display = '';
    const box = fig.querySelector('.plot').getBoundingClientRect();
    tip.style.left = Math.min(e.clientX - box.left + 12, box.width - tip.offsetWidth) + 'px';
    tip.style.top = (e.clientY - box.top + 12) + 'px';
  });
  svg.addEventListener('mouseleave', () => { tip.hidden = true; cursor.style.display = 'none'; });
}
"#;

/// The whole page of one run.
pub fn render(report: &Report) -> Result<String, String> {
    let s = &report.summary;
    let runs = [Run {
        label: String::new(),
        report,
    }];
    let body = format!(
        r#"<h1>Load test: {model}</h1>
<p>{mode} &rarr; {url}</p>
<p>{requests} requests, {ok} ok, error rate {err:.2}%, {late} sent late; offered {offered:.1} req/s, achieved {achieved:.1} req/s over {dur:.1} s.</p>
{charts}
<h2>Run</h2>{meta}
{latency_table}
{kube}"#,
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
        charts = charts(&runs)?,
        meta = meta_table(&runs),
        latency_table = latency_table(report),
        kube = report
            .kubernetes
            .as_ref()
            .map(kube_table)
            .unwrap_or_default(),
    );
    Ok(page(&format!("torchship load test: {}", s.model), &body))
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

/// The HPA timeline for `--watch-hpa`, one row per reading, Deployment change and watch error.
fn kube_table(k: &Timeline) -> String {
    let mut rows = String::new();
    for p in &k.hpa_timeline {
        let _ = write!(
            rows,
            "<tr><td>{:.1}</td><td>HPA</td><td>{}</td><td>{}</td><td></td><td>{}</td><td>{}</td></tr>",
            p.t,
            p.current_replicas,
            p.desired_replicas,
            p.reading(),
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
    format!(
        r#"<h2>Kubernetes: HPA {hpa} &rarr; Deployment {dep}</h2>
<table id="hpa-timeline"><tr><th>t (s)</th><th>object</th><th>replicas</th><th>desired</th><th>ready</th><th>metric / target</th><th>note</th></tr>{rows}</table>"#,
        hpa = escape(&k.hpa),
        dep = escape(k.deployment.as_deref().unwrap_or("?")),
    )
}
