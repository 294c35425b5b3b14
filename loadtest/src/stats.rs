//! Statistics with bounded memory at any rate: two whole-run HdrHistograms (latency from each
//! request's intended send time, "corrected", and from its actual send, "uncorrected"), and one
//! small histogram for the current second, folded into a row of the time series when the second
//! ends.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// Latencies from 1 µs to 10 minutes.
const MAX_US: u64 = 600_000_000;

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ok,
    Status(u16),
    /// A gRPC answer whose `grpc-status` is not 0 (OK).
    Grpc(u16),
    Timeout,
    Transport,
    /// A success whose body the codec cannot decode ([`crate::check`]).
    Undecodable,
}

impl Class {
    pub fn label(self) -> String {
        match self {
            Class::Ok => "ok".into(),
            Class::Status(code) => format!("status_{code}"),
            Class::Grpc(code) => format!("grpc_{code}"),
            Class::Timeout => "timeout".into(),
            Class::Transport => "transport".into(),
            Class::Undecodable => "undecodable".into(),
        }
    }
}

/// One finished request.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub intended: Instant,
    pub sent: Instant,
    pub done: Instant,
    pub class: Class,
}

/// Percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1e3;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1e3,
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Requests whose intended send time fell in this second.
    pub offered: u64,
    /// Successful responses that arrived in this second.
    pub achieved: u64,
    pub errors: u64,
    /// Corrected latency percentiles of the responses that arrived in this second (ms).
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The same percentiles uncorrected (from the actual send), for the latency chart.
    #[serde(default)]
    pub p50_uncorrected: f64,
    #[serde(default)]
    pub p90_uncorrected: f64,
    #[serde(default)]
    pub p99_uncorrected: f64,
    /// The errors of this second by class (`status_503`, `timeout`, ...), for the errors chart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_class: BTreeMap<String, u64>,
    /// The load tester's own resident memory when the second closed (MiB; 0 where unknown):
    /// evidence that its memory stays bounded at any rate.
    #[serde(default)]
    pub client_rss_mib: f64,
}

/// What the live view shows: the last full second and running totals.
#[derive(Clone, Debug, Default)]
pub struct LiveStats {
    pub last: Second,
    pub requests: u64,
    pub errors: u64,
}

/// This process's resident set size in MiB (Linux `/proc/self/statm`; 0 elsewhere).
pub fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // Every Linux target this runs on uses 4 KiB pages.
    pages * 4096.0 / (1024.0 * 1024.0)
}

pub struct Collector {
    start: Instant,
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    current: Histogram<u64>,
    current_uncorrected: Histogram<u64>,
    current_t: u64,
    pub series: Vec<Second>,
    pub classes: BTreeMap<String, u64>,
    pub late: u64,
    pub last_done: Instant,
    /// Shared with the live view, updated once a second.
    pub live: std::sync::Arc<std::sync::Mutex<LiveStats>>,
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("valid bounds")
}

impl Collector {
    pub fn new(start: Instant) -> Collector {
        Collector {
            start,
            corrected: histogram(3),
            uncorrected: histogram(3),
            current: histogram(2),
            current_uncorrected: histogram(2),
            current_t: 0,
            series: Vec::new(),
            classes: BTreeMap::new(),
            late: 0,
            last_done: start,
            live: Default::default(),
        }
    }

    fn second(&mut self, t: u64) -> &mut Second {
        while self.series.len() as u64 <= t {
            let t = self.series.len() as u64;
            self.series.push(Second {
                t,
                ..Default::default()
            });
        }
        &mut self.series[t as usize]
    }

    fn close_current(&mut self) {
        let p = percentiles(&self.current);
        let u = percentiles(&self.current_uncorrected);
        let t = self.current_t;
        let row = self.second(t);
        (row.p50, row.p90, row.p99) = (p.p50, p.p90, p.p99);
        (
            row.p50_uncorrected,
            row.p90_uncorrected,
            row.p99_uncorrected,
        ) = (u.p50, u.p90, u.p99);
        row.client_rss_mib = rss_mib();
        let last = row.clone();
        self.current.reset();
        self.current_uncorrected.reset();
        let requests = self.classes.values().sum::<u64>();
        let errors = requests - self.classes.get("ok").copied().unwrap_or(0);
        *self.live.lock().unwrap() = LiveStats {
            last,
            requests,
            errors,
        };
    }

    pub fn record(&mut self, o: Outcome) {
        let us = |d: Duration| (d.as_micros() as u64).clamp(1, MAX_US);
        let corrected = us(o.done - o.intended);
        let done_t = (o.done - self.start).as_secs();
        if done_t > self.current_t {
            self.close_current();
            self.current_t = done_t;
        }
        let intended_t = (o.intended.max(self.start) - self.start).as_secs();
        self.second(intended_t).offered += 1;
        *self.classes.entry(o.class.label()).or_default() += 1;
        self.last_done = self.last_done.max(o.done);
        if o.class == Class::Ok {
            self.second(done_t).achieved += 1;
            let uncorrected = us(o.done - o.sent);
            self.corrected.saturating_record(corrected);
            self.uncorrected.saturating_record(uncorrected);
            self.current.saturating_record(corrected);
            self.current_uncorrected.saturating_record(uncorrected);
        } else {
            let row = self.second(done_t);
            row.errors += 1;
            *row.errors_by_class.entry(o.class.label()).or_default() += 1;
        }
    }

    /// Folds the last second in; returns the percentiles (corrected, uncorrected).
    pub fn finish(&mut self) -> (Percentiles, Percentiles) {
        self.close_current();
        (percentiles(&self.corrected), percentiles(&self.uncorrected))
    }
}

/// One point of the percentile spectrum: the percentile (e.g. 99.9) and the latency there (ms).
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub ms: f64,
}

/// The percentile spectrum as HdrHistogram's `outputPercentileDistribution` walks it: five steps
/// per halving of the distance to 100 %, so the tail gets as many points as the body. The last
/// step (100 %, "1 in infinity") is left out; the maximum is in the summary.
pub fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    let mut out: Vec<SpectrumPoint> = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let point = SpectrumPoint {
            percentile: 100.0 * q,
            ms: h.highest_equivalent(v.value_iterated_to()) as f64 / 1e3,
        };
        if out.last().is_none_or(|p| p.percentile < point.percentile) {
            out.push(point);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrected_latency_counts_from_the_intended_time() {
        let start = Instant::now();
        let mut c = Collector::new(start);
        let ms = Duration::from_millis;
        // On time, 1 ms each.
        for i in 0..98 {
            let t = start + ms(10 * i);
            c.record(Outcome {
                intended: t,
                sent: t,
                done: t + ms(1),
                class: Class::Ok,
            });
        }
        // Sent 500 ms late (the client was stuck), answered in 1 ms.
        let t = start + ms(990);
        c.record(Outcome {
            intended: t,
            sent: t + ms(500),
            done: t + ms(501),
            class: Class::Ok,
        });
        c.record(Outcome {
            intended: t,
            sent: t,
            done: t + ms(2),
            class: Class::Status(429),
        });
        let (corrected, uncorrected) = c.finish();
        assert!(
            corrected.max >= 500.0 && uncorrected.max < 2.0,
            "{corrected:?} {uncorrected:?}"
        );
        assert_eq!(c.classes["ok"], 99);
        assert_eq!(c.classes["status_429"], 1);
        assert_eq!(c.series[0].offered, 100);
        assert_eq!(c.series[0].achieved, 98);
        assert_eq!(c.series[1].achieved, 1);
        assert_eq!(c.series[0].errors, 1, "the 429 came back at 0.992 s");
        assert_eq!(c.series[0].errors_by_class["status_429"], 1);
        assert_eq!(c.series[1].errors, 0);
        assert!(c.series[1].p99 >= 500.0 && c.series[1].p99_uncorrected < 2.0);
    }

    #[test]
    fn the_spectrum_rises_to_the_tail() {
        let mut h = histogram(3);
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let s = spectrum(&h);
        assert!(s.len() > 40, "{}", s.len());
        assert!(s
            .windows(2)
            .all(|w| w[0].percentile < w[1].percentile && w[0].ms <= w[1].ms));
        let at = |p: f64| s.iter().find(|x| x.percentile >= p).unwrap().ms;
        assert!((at(50.0) - 5.0).abs() < 0.1, "{s:?}");
        assert!(
            at(99.9) > 9.9 && s.last().unwrap().percentile > 99.9,
            "{s:?}"
        );
    }
}
