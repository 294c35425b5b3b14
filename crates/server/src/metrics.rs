//! Prometheus metrics in an explicit registry held in [`crate::AppState`], so tests can read them.
//! Every name starts with `torchship_`; labels are bounded (model, version, outcome kind, route
//! template), never raw paths or user strings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds, from 100 µs to 30 s: sub-millisecond digits calls and multi-second overloaded queues.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// All of the server's metric families.
pub struct Metrics {
    pub registry: Registry,
    outcomes: Vec<&'static str>,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    failure_duration: HistogramVec,
    rows: IntCounterVec,
    executions: IntCounterVec,
    queue_duration: HistogramVec,
    compute_duration: HistogramVec,
    batch_size: HistogramVec,
    pending: IntGaugeVec,
    inflight: IntGaugeVec,
    load_duration: GaugeVec,
    ready: IntGaugeVec,
    http_requests: IntCounterVec,
    cuda_memory: IntGaugeVec,
}

/// Pre-labelled handles for one model version, so the hot path does no label lookups.
#[derive(Clone)]
pub struct ModelMetrics {
    pub rows: IntCounter,
    pub executions: IntCounter,
    pub request_duration: Histogram,
    /// The failed requests among `request_duration`'s (the statistics extension's `fail`).
    pub failure_duration: Histogram,
    pub queue_duration: Histogram,
    pub compute_input: Histogram,
    pub compute_forward: Histogram,
    pub compute_output: Histogram,
    pub batch_size: Histogram,
    pub pending: IntGauge,
    pub inflight: IntGauge,
    pub load_duration: Gauge,
    pub ready: IntGauge,
    /// What the statistics extension reports and Prometheus has no series for.
    pub stats: Arc<StatsOnly>,
}

/// Counters the statistics extension reports beside the Prometheus series: the last request's
/// time and the compute time by exact batch size (a `batch_size` label on the compute histograms
/// would multiply their series by max_batch_size).
#[derive(Default)]
pub struct StatsOnly {
    /// Milliseconds since the Unix epoch of the last inference request; 0 before the first.
    pub last_inference_ms: AtomicU64,
    /// Forward passes by rows: count, then input, forward and output nanoseconds.
    by_batch_size: Mutex<BTreeMap<u64, [u64; 4]>>,
}

impl StatsOnly {
    /// Counts one forward pass of `rows` rows and its phases (seconds: input, forward, output).
    pub fn pass(&self, rows: u64, phases: [f64; 3]) {
        let mut map = self.by_batch_size.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(rows).or_default();
        entry[0] += 1;
        for (total, seconds) in entry[1..].iter_mut().zip(phases) {
            *total += nanos(seconds);
        }
    }

    /// `(rows, [passes, input ns, forward ns, output ns])`, by rows.
    pub fn by_batch_size(&self) -> Vec<(u64, [u64; 4])> {
        let map = self.by_batch_size.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// Notes an inference request now.
    pub fn touch(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now, Ordering::Relaxed);
    }
}

/// Whole nanoseconds in `seconds` (0 for negative or NaN), as the statistics extension reports
/// times.
pub fn nanos(seconds: f64) -> u64 {
    (seconds * 1e9) as u64 // `as` saturates: negative and NaN are 0
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid histogram")
}

/// The protocol a request came in by: the `protocol` label's only values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Http, Protocol::Grpc];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

impl Metrics {
    /// `outcomes`: every value the `outcome` label can take (so that an unloaded version's series
    /// can all be dropped); the server passes [`crate::error::outcomes`].
    pub fn new(outcomes: Vec<&'static str>) -> Metrics {
        let mv = &["model", "version"];
        let m = Metrics {
            outcomes,
            registry: Registry::new(),
            requests: IntCounterVec::new(
                Opts::new("torchship_request_total", "Inference requests by protocol (http, grpc) and outcome: success, or the error_type of the failure."),
                &["model", "version", "protocol", "outcome"],
            )
            .expect("valid"),
            request_duration: histogram("torchship_request_duration_seconds", "Inference request time in the server, body read to response built.", LATENCY_BUCKETS, mv),
            failure_duration: histogram("torchship_request_failure_duration_seconds", "The failed requests among torchship_request_duration_seconds.", LATENCY_BUCKETS, mv),
            rows: IntCounterVec::new(Opts::new("torchship_inference_total", "Rows inferred (a request of N rows counts N)."), mv).expect("valid"),
            executions: IntCounterVec::new(Opts::new("torchship_execution_total", "Forward passes run."), mv).expect("valid"),
            queue_duration: histogram("torchship_queue_duration_seconds", "Time a request waited for a forward thread.", LATENCY_BUCKETS, mv),
            compute_duration: histogram("torchship_compute_duration_seconds", "Forward-pass time by phase: input (tensors built and moved), forward, output (copied back).", LATENCY_BUCKETS, &["model", "version", "phase"]),
            batch_size: histogram("torchship_batch_size", "Rows per forward pass.", BATCH_BUCKETS, mv),
            pending: IntGaugeVec::new(Opts::new("torchship_pending_requests", "Requests queued for a forward thread."), mv).expect("valid"),
            inflight: IntGaugeVec::new(Opts::new("torchship_inflight_executions", "Forward passes running now."), mv).expect("valid"),
            load_duration: GaugeVec::new(Opts::new("torchship_model_load_duration_seconds", "Time to load and warm up the model."), mv).expect("valid"),
            ready: IntGaugeVec::new(Opts::new("torchship_model_ready", "1 when the model version serves, else 0."), mv).expect("valid"),
            http_requests: IntCounterVec::new(
                Opts::new("torchship_http_requests_total", "HTTP requests by route template, method and status."),
                &["route", "method", "status"],
            )
            .expect("valid"),
            cuda_memory: IntGaugeVec::new(
                Opts::new("torchship_cuda_memory_bytes", "CUDA device memory (cudaMemGetInfo) of devices serving models: used and total."),
                &["device", "kind"],
            )
            .expect("valid"),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.failure_duration.clone()),
            Box::new(m.rows.clone()),
            Box::new(m.executions.clone()),
            Box::new(m.queue_duration.clone()),
            Box::new(m.compute_duration.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.pending.clone()),
            Box::new(m.inflight.clone()),
            Box::new(m.load_duration.clone()),
            Box::new(m.ready.clone()),
            Box::new(m.http_requests.clone()),
            Box::new(m.cuda_memory.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("unique metric names");
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::new(
                    std::process::id() as i32,
                    "torchship",
                ),
            ))
            .expect("unique process metric names");
        m
    }

    /// Handles for one model version (creating its series at zero, so dashboards see them at once).
    pub fn model(&self, model: &str, version: u64) -> ModelMetrics {
        let v = version.to_string();
        let l = &[model, v.as_str()];
        ModelMetrics {
            rows: self.rows.with_label_values(l),
            executions: self.executions.with_label_values(l),
            request_duration: self.request_duration.with_label_values(l),
            failure_duration: self.failure_duration.with_label_values(l),
            queue_duration: self.queue_duration.with_label_values(l),
            compute_input: self
                .compute_duration
                .with_label_values(&[model, &v, "input"]),
            compute_forward: self
                .compute_duration
                .with_label_values(&[model, &v, "forward"]),
            compute_output: self
                .compute_duration
                .with_label_values(&[model, &v, "output"]),
            batch_size: self.batch_size.with_label_values(l),
            pending: self.pending.with_label_values(l),
            inflight: self.inflight.with_label_values(l),
            load_duration: self.load_duration.with_label_values(l),
            ready: self.ready.with_label_values(l),
            stats: Arc::default(),
        }
    }

    /// Counts one inference request's outcome (`success` or an error kind).
    pub fn request(&self, model: &str, version: u64, protocol: Protocol, outcome: &str) {
        self.requests
            .with_label_values(&[model, &version.to_string(), protocol.as_str(), outcome])
            .inc();
    }

    /// Counts one HTTP request by its route template (never the raw path).
    pub fn http(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
    }

    /// Drops an unloaded version's series so they do not linger as stale values.
    pub fn forget_model(&self, model: &str, version: u64) {
        let v = version.to_string();
        let l = &[model, v.as_str()];
        for outcome in &self.outcomes {
            for protocol in Protocol::ALL {
                let p = protocol.as_str();
                let _ = self.requests.remove_label_values(&[model, &v, p, outcome]);
            }
        }
        for vec in [&self.rows, &self.executions] {
            let _ = vec.remove_label_values(l);
        }
        for vec in [
            &self.request_duration,
            &self.failure_duration,
            &self.queue_duration,
            &self.batch_size,
        ] {
            let _ = vec.remove_label_values(l);
        }
        for phase in ["input", "forward", "output"] {
            let _ = self
                .compute_duration
                .remove_label_values(&[model, &v, phase]);
        }
        for vec in [&self.pending, &self.inflight, &self.ready] {
            let _ = vec.remove_label_values(l);
        }
        let _ = self.load_duration.remove_label_values(l);
    }

    /// Refreshes the CUDA memory gauges of these device indices (called at scrape time).
    pub fn refresh_cuda(&self, devices: impl IntoIterator<Item = usize>) {
        for index in devices {
            if let Some((free, total)) = crate::cuda::memory(index) {
                let d = format!("cuda:{index}");
                self.cuda_memory
                    .with_label_values(&[&d, "used"])
                    .set((total - free) as i64);
                self.cuda_memory
                    .with_label_values(&[&d, "total"])
                    .set(total as i64);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_prefixed_and_model_series_start_at_zero() {
        let m = Metrics::new(crate::error::outcomes());
        let h = m.model("digits", 1);
        h.rows.inc_by(3);
        m.request("digits", 1, Protocol::Http, "success");
        m.request("digits", 1, Protocol::Grpc, "success");
        let text = m.encode();
        assert!(text.contains("torchship_inference_total{model=\"digits\",version=\"1\"} 3"));
        assert!(text.contains(
            "torchship_request_total{model=\"digits\",outcome=\"success\",protocol=\"http\",version=\"1\"} 1"
        ));
        assert!(text.contains(
            "torchship_request_total{model=\"digits\",outcome=\"success\",protocol=\"grpc\",version=\"1\"} 1"
        ));
        assert!(text.contains("torchship_execution_total{model=\"digits\",version=\"1\"} 0"));
        assert!(text.contains("torchship_process_resident_memory_bytes"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("torchship_"), "unprefixed: {line}");
        }
        m.forget_model("digits", 1);
        assert!(!m.encode().contains("model=\"digits\""));
    }

    #[test]
    fn statistics_only_counters_sum_passes_by_batch_size() {
        let s = StatsOnly::default();
        s.pass(4, [0.001, 0.002, 0.5e-9]);
        s.pass(1, [0.0, 1.0, 0.0]);
        s.pass(4, [0.001, 0.002, 0.0]);
        assert_eq!(
            s.by_batch_size(),
            [
                (1, [1, 0, 1_000_000_000, 0]),
                (4, [2, 2_000_000, 4_000_000, 0])
            ]
        );
        assert_eq!(s.last_inference_ms.load(Ordering::Relaxed), 0);
        s.touch();
        assert!(s.last_inference_ms.load(Ordering::Relaxed) > 1_700_000_000_000);
    }
}
