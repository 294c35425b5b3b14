//! The live view: one indicatif progress line on stderr with elapsed/remaining time, the last
//! second's rate and latency, errors so far and, when watching Kubernetes, the HPA's CPU against
//! its target and current/desired/ready replicas. indicatif draws nothing when stderr is not a
//! terminal, so logs and CI output stay clean.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::kube_watch::Timeline;
use crate::stats::LiveStats;

/// How often the line is redrawn (a display rate, not a synchronisation).
const REDRAW: Duration = Duration::from_millis(250);

/// The running live view; [`LiveView::finish`] clears it before the report is printed.
pub struct LiveView {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

/// The message part of the line.
pub fn line(stats: &LiveStats, kube: Option<&Timeline>) -> String {
    let l = &stats.last;
    let mut s = format!(
        "{} req  {} req/s  errors {}  p50 {:.1} ms  p99 {:.1} ms",
        stats.requests, l.achieved, stats.errors, l.p50, l.p99
    );
    if let Some(k) = kube {
        match k.hpa_timeline.last() {
            Some(h) => {
                s.push_str(&format!(
                    " | HPA {} replicas {}/{}",
                    h.reading(),
                    h.current_replicas,
                    h.desired_replicas
                ));
            }
            None => s.push_str(" | HPA: waiting"),
        }
        if let Some(d) = k.deployment_timeline.last() {
            s.push_str(&format!(" ready {}", d.ready_replicas));
        }
        if let Some((_, e)) = k.errors.last() {
            s.push_str(&format!(" | {e}"));
        }
    }
    s
}

impl LiveView {
    pub fn start(
        planned: Duration,
        stats: Arc<Mutex<LiveStats>>,
        kube: Option<Arc<Mutex<Timeline>>>,
    ) -> LiveView {
        let bar = ProgressBar::new(planned.as_millis() as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:24}] {eta:>4} left  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        let started = std::time::Instant::now();
        let task = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REDRAW);
                loop {
                    tick.tick().await;
                    bar.set_position(started.elapsed().as_millis() as u64);
                    let stats = stats.lock().unwrap().clone();
                    let kube = kube.as_ref().map(|k| k.lock().unwrap().clone());
                    bar.set_message(line(&stats, kube.as_ref()));
                }
            })
        };
        LiveView { bar, task }
    }

    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_watch::{DeploymentPoint, HpaPoint};
    use crate::stats::Second;

    #[test]
    fn the_line_shows_load_and_the_hpa() {
        let stats = LiveStats {
            last: Second {
                achieved: 312,
                p50: 1.24,
                p99: 5.5,
                ..Default::default()
            },
            requests: 1234,
            errors: 2,
        };
        assert_eq!(
            line(&stats, None),
            "1234 req  312 req/s  errors 2  p50 1.2 ms  p99 5.5 ms"
        );
        let k = Timeline {
            hpa_timeline: vec![HpaPoint {
                current_replicas: 3,
                desired_replicas: 7,
                cpu_percent: Some(151),
                cpu_target_percent: Some(70),
                ..Default::default()
            }],
            deployment_timeline: vec![DeploymentPoint {
                ready_replicas: 5,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(line(&stats, Some(&k)).ends_with("| HPA cpu 151%/70% replicas 3/7 ready 5"));
    }
}
