//! How a run with `--watch-hpa` and a step in its offered load (e.g. `--stages 1m:10,10s:80,3m:80,
//! 10s:10,4m:10`) went for the autoscaler, for `loadtest compare` of two autoscalers under the same
//! step: when the step began, how long until the replicas ready reached the most the step got,
//! the latency and refusals during the step, and the replicas paid for over the whole run.

use crate::report::Report;
use crate::stats::Second;

/// The seconds whose offered load is at least this share of the run's peak are "the step".
const STEP_SHARE: f64 = 0.75;

/// The step: the first and last second offered at least [`STEP_SHARE`] of the peak rate.
pub fn step(series: &[Second]) -> Option<(u64, u64)> {
    let peak = series.iter().map(|s| s.offered).max()? as f64;
    let high = |s: &&Second| peak > 0.0 && s.offered as f64 >= STEP_SHARE * peak;
    let start = series.iter().find(high)?.t;
    let end = series.iter().rev().find(high)?.t;
    Some((start, end))
}

/// The autoscaling measures of one run; `None` where the run has no HPA watch or no step.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Seconds from the run's start to the step.
    pub step_at_s: f64,
    /// Replicas ready when the step began, and the most ready during it.
    pub ready_at_step: f64,
    pub peak_ready: f64,
    /// Seconds from the step to the first moment `peak_ready` were ready (0 when it never scaled).
    pub to_peak_s: f64,
    /// The median and the worst of the per-second p99 (corrected, ms) during the step.
    pub step_p99_median_ms: f64,
    pub step_p99_worst_ms: f64,
    /// Failed requests (refused, timed out, ...) sent during the step.
    pub step_errors: f64,
    /// Replicas ready integrated over the run: what the run cost in pod-seconds.
    pub replica_seconds: f64,
}

/// The ready replicas at `t` (the last Deployment reading at or before it).
fn ready_at(report: &Report, t: f64) -> f64 {
    let k = report.kubernetes.as_ref();
    let points = k.map(|k| k.deployment_timeline.as_slice()).unwrap_or(&[]);
    points
        .iter()
        .take_while(|p| p.t <= t)
        .last()
        .map_or(0.0, |p| p.ready_replicas as f64)
}

pub fn scaling(report: &Report) -> Option<Scaling> {
    let k = report.kubernetes.as_ref()?;
    let (start, end) = step(&report.series)?;
    let (start_f, end_f) = (start as f64, end as f64 + 1.0);
    let ready_at_step = ready_at(report, start_f);
    let during = k
        .deployment_timeline
        .iter()
        .filter(|p| p.t > start_f && p.t <= end_f);
    let peak_ready = during
        .clone()
        .map(|p| p.ready_replicas as f64)
        .fold(ready_at_step, f64::max);
    let to_peak_s = match during
        .clone()
        .find(|p| p.ready_replicas as f64 >= peak_ready)
    {
        Some(p) if peak_ready > ready_at_step => p.t - start_f,
        _ => 0.0,
    };
    let in_step: Vec<&Second> = report
        .series
        .iter()
        .filter(|s| s.t >= start && s.t <= end)
        .collect();
    let mut p99: Vec<f64> = in_step
        .iter()
        .filter(|s| s.achieved > 0)
        .map(|s| s.p99)
        .collect();
    p99.sort_by(f64::total_cmp);
    let duration = report.summary.duration_s;
    let mut replica_seconds = 0.0;
    let mut t = 0.0;
    while t < duration {
        replica_seconds += ready_at(report, t);
        t += 1.0;
    }
    Some(Scaling {
        step_at_s: start_f,
        ready_at_step,
        peak_ready,
        to_peak_s,
        step_p99_median_ms: p99.get(p99.len() / 2).copied().unwrap_or(f64::NAN),
        step_p99_worst_ms: p99.last().copied().unwrap_or(f64::NAN),
        step_errors: in_step.iter().map(|s| s.errors as f64).sum(),
        replica_seconds,
    })
}

/// One measure of a [`Scaling`].
pub type Measure = fn(&Scaling) -> f64;

/// The rows `loadtest compare` adds when every run has an HPA watch and a step.
pub fn rows() -> Vec<(&'static str, Measure)> {
    vec![
        ("step at s", |s| s.step_at_s),
        ("ready at the step", |s| s.ready_at_step),
        ("peak ready in the step", |s| s.peak_ready),
        ("s from step to peak", |s| s.to_peak_s),
        ("step p99 ms (median s)", |s| s.step_p99_median_ms),
        ("step p99 ms (worst s)", |s| s.step_p99_worst_ms),
        ("errors in the step", |s| s.step_errors),
        ("replica-seconds (run)", |s| s.replica_seconds),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_watch::{DeploymentPoint, Timeline};

    fn second(t: u64, offered: u64, p99: f64, errors: u64) -> Second {
        Second {
            t,
            offered,
            achieved: offered - errors,
            errors,
            p99,
            ..Default::default()
        }
    }

    /// A report with only what these measures read (as `loadtest compare`'s tests build one).
    fn empty_report(duration_s: f64) -> Report {
        let p = serde_json::to_value(crate::stats::Percentiles::default()).unwrap();
        serde_json::from_value(serde_json::json!({
            "summary": {
                "url": "http://127.0.0.1:8080", "model": "mlp", "mode": "open loop",
                "requests": 0, "ok": 0, "errors": {}, "error_rate": 0.0,
                "duration_s": duration_s, "offered_rps": 0.0, "achieved_rps": 0.0, "late": 0,
                "latency_ms": {"corrected": p.clone(), "uncorrected": p},
            },
            "series": [],
        }))
        .unwrap()
    }

    #[test]
    fn the_step_its_latency_and_the_time_to_the_peak_replicas() {
        let mut report = empty_report(40.0);
        // 10 s at 10/s, 20 s at 80/s, 10 s at 10/s.
        report.series = (0..40)
            .map(|t| match t {
                10..30 => second(t, 80, if t < 20 { 50.0 } else { 5.0 }, u64::from(t == 12)),
                _ => second(t, 10, 2.0, 0),
            })
            .collect();
        let ready = |t: f64, ready_replicas: i32| DeploymentPoint {
            t,
            ready_replicas,
            ..Default::default()
        };
        report.kubernetes = Some(Timeline {
            deployment_timeline: vec![
                ready(0.5, 3),
                ready(18.0, 5),
                ready(24.0, 6),
                ready(36.0, 3),
            ],
            ..Default::default()
        });
        assert_eq!(step(&report.series), Some((10, 29)));
        let s = scaling(&report).unwrap();
        assert_eq!(
            (s.step_at_s, s.ready_at_step, s.peak_ready, s.to_peak_s),
            (10.0, 3.0, 6.0, 14.0)
        );
        assert_eq!(
            (s.step_p99_median_ms, s.step_p99_worst_ms, s.step_errors),
            (50.0, 50.0, 1.0)
        );
        // t=0 (before the first reading) counts 0; 3 x 17 + 5 x 6 + 6 x 12 + 3 x 4.
        assert_eq!(
            s.replica_seconds,
            3.0 * 17.0 + 5.0 * 6.0 + 6.0 * 12.0 + 3.0 * 4.0
        );
    }

    #[test]
    fn no_watch_or_no_load_has_no_scaling() {
        let mut report = empty_report(1.0);
        assert_eq!(scaling(&report), None);
        report.series = vec![second(0, 0, 0.0, 0)];
        report.kubernetes = Some(Timeline::default());
        assert_eq!(scaling(&report), None);
    }
}
