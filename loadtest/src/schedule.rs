//! When each open-loop request should leave: the rate is piecewise linear in time (one constant
//! segment for `--rate`, ramps for `--stages`), and request `n` leaves when the cumulative count
//! N(t) = integral of rate reaches `n`. Even arrivals use n = 0, 1, 2, ...; Poisson arrivals use
//! exponential gaps of mean 1 in n, which the same map turns into a Poisson process of the given rate.

use std::time::Duration;

/// One stage: ramp linearly to `target` requests/s over `duration` (k6's `--stages` semantics).
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// `--stages`: one value on the command line, several stages.
#[derive(Clone, Debug, PartialEq)]
pub struct Stages(pub Vec<Stage>);

/// `--stages` as clap parses it.
pub fn parse_stages_arg(s: &str) -> Result<Stages, String> {
    parse_stages(s).map(Stages)
}

/// Parses `30s:10,2m:200,30s:0`.
pub fn parse_stages(s: &str) -> Result<Vec<Stage>, String> {
    s.split(',')
        .map(|part| {
            let (d, t) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("stage '{part}' is not DURATION:RATE (e.g. 30s:100)"))?;
            let duration = crate::cli::parse_duration(d)?;
            let target: f64 = t
                .trim()
                .parse()
                .map_err(|_| format!("stage '{part}': '{t}' is not a rate"))?;
            if !(target >= 0.0 && target.is_finite()) || duration.is_zero() {
                return Err(format!(
                    "stage '{part}' needs a positive duration and a rate >= 0"
                ));
            }
            Ok(Stage { duration, target })
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Segment {
    start: f64,
    length: f64,
    from: f64,
    to: f64,
    /// Requests due before this segment.
    before: f64,
}

/// The whole run's rate over time.
#[derive(Clone, Debug)]
pub struct Schedule {
    segments: Vec<Segment>,
    current: usize,
}

impl Schedule {
    /// A constant `rate` for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Schedule {
        Schedule::ramps(
            rate,
            &[Stage {
                duration,
                target: rate,
            }],
        )
    }

    /// Starting at `initial` requests/s, ramping through `stages`.
    pub fn ramps(initial: f64, stages: &[Stage]) -> Schedule {
        let (mut start, mut from, mut before) = (0.0, initial, 0.0);
        let segments = stages
            .iter()
            .map(|s| {
                let length = s.duration.as_secs_f64();
                let seg = Segment {
                    start,
                    length,
                    from,
                    to: s.target,
                    before,
                };
                before += (from + s.target) / 2.0 * length;
                start += length;
                from = s.target;
                seg
            })
            .collect();
        Schedule {
            segments,
            current: 0,
        }
    }

    pub fn total(&self) -> Duration {
        Duration::from_secs_f64(self.segments.iter().map(|s| s.length).sum())
    }

    /// Requests due over the whole run.
    pub fn expected(&self) -> f64 {
        self.segments
            .last()
            .map(|s| s.before + (s.from + s.to) / 2.0 * s.length)
            .unwrap_or(0.0)
    }

    /// Offset from the start at which cumulative count `n` is reached; `None` after the end.
    /// Calls must come with non-decreasing `n`.
    pub fn time_of(&mut self, n: f64) -> Option<Duration> {
        while let Some(seg) = self.segments.get(self.current) {
            let total = (seg.from + seg.to) / 2.0 * seg.length;
            let need = n - seg.before;
            if need < total {
                // Solve from*s + (to-from)/(2L)*s^2 = need for s in [0, L].
                let a = (seg.to - seg.from) / (2.0 * seg.length);
                let b = seg.from;
                let s = if a.abs() < 1e-12 {
                    if b <= 0.0 {
                        self.current += 1;
                        continue;
                    }
                    need / b
                } else {
                    (-b + (b * b + 4.0 * a * need).max(0.0).sqrt()) / (2.0 * a)
                };
                return Some(Duration::from_secs_f64(
                    seg.start + s.clamp(0.0, seg.length),
                ));
            }
            self.current += 1;
        }
        None
    }
}

/// The schedule's clock: a thread of its own that sends each request's intended time when it is
/// due. std's sleep is precise to tens of µs, tokio's timer only to 1 ms, which would make most
/// requests late and inflate corrected latency.
pub struct Ticker {
    /// Intended send times, as they fall due.
    pub due: tokio::sync::mpsc::UnboundedReceiver<tokio::time::Instant>,
    halt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Ticker {
    /// Starts ticking `schedule` from `start`, at most `limit` times.
    pub fn start(
        mut schedule: Schedule,
        arrivals: crate::cli::Arrivals,
        seed: u64,
        limit: u64,
        start: tokio::time::Instant,
    ) -> Ticker {
        use std::sync::atomic::Ordering;
        let (due_tx, due) = tokio::sync::mpsc::unbounded_channel();
        let halt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = halt.clone();
        let std_start = std::time::Instant::now() - start.elapsed();
        let thread = std::thread::Builder::new()
            .name("loadtest-schedule".into())
            .spawn(move || {
                let mut rng = crate::payload::Rng::new(seed);
                // n: position on the cumulative-count axis (see the top of this file).
                let (mut i, mut n) = (0u64, 0f64);
                while i < limit && !stop.load(Ordering::Relaxed) {
                    let Some(at) = schedule.time_of(n) else { break };
                    if let Some(wait) =
                        (std_start + at).checked_duration_since(std::time::Instant::now())
                    {
                        std::thread::sleep(wait);
                    }
                    if due_tx.send(start + at).is_err() {
                        break;
                    }
                    i += 1;
                    n = match arrivals {
                        crate::cli::Arrivals::Even => i as f64,
                        crate::cli::Arrivals::Poisson => n - (1.0 - rng.unit()).ln(),
                    };
                }
            })
            .expect("spawn the scheduler thread");
        Ticker { due, halt, thread }
    }

    /// Stops the thread and waits for it (off the async runtime).
    pub async fn stop(self) {
        self.halt.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(self.due);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let mut s = Schedule::constant(500.0, Duration::from_secs(10));
        assert_eq!(s.time_of(0.0), Some(Duration::ZERO));
        let t = s.time_of(250.0).unwrap().as_secs_f64();
        assert!((t - 0.5).abs() < 1e-9);
        assert!(s.time_of(4999.0).is_some());
        assert_eq!(s.time_of(5000.0), None, "exactly 5000 requests in 10 s");
        assert!(
            (Schedule::constant(500.0, Duration::from_secs(10)).expected() - 5000.0).abs() < 1e-9
        );
    }

    #[test]
    fn ramps_follow_the_integral_of_the_rate() {
        // 0 -> 100 req/s over 10 s: 500 requests, the n-th at sqrt(n / 5) s.
        let stages = parse_stages("10s:100,5s:100,5s:0").unwrap();
        let mut s = Schedule::ramps(0.0, &stages);
        assert!((s.expected() - (500.0 + 500.0 + 250.0)).abs() < 1e-9);
        for n in [1.0, 20.0, 125.0, 499.0] {
            let t = s.time_of(n).unwrap().as_secs_f64();
            assert!((t - (n / 5.0f64).sqrt()).abs() < 1e-6, "n={n} t={t}");
        }
        let t = s.time_of(750.0).unwrap().as_secs_f64();
        assert!((t - 12.5).abs() < 1e-9, "steady stage: {t}");
        assert!(s.time_of(1249.0).is_some());
        assert_eq!(s.time_of(1250.0), None);
        assert_eq!(s.total(), Duration::from_secs(20));
    }

    #[test]
    fn stage_strings_are_checked() {
        assert_eq!(
            parse_stages("30s:10,2m:200").unwrap()[1],
            Stage {
                duration: Duration::from_secs(120),
                target: 200.0
            }
        );
        for bad in ["30s", "30s:x", "0s:10", "30s:-1", "fast:10"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
    }
}
