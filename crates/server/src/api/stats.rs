//! Triton's statistics extension: `GET /v2/models[/{m}[/versions/{v}]]/stats` (and gRPC
//! `ModelStatistics`, from the same [`ModelStats`]), read from the counters behind `/metrics`:
//! `inference_count` is `torchship_inference_total`, `execution_count` `torchship_execution_total`,
//! `success`/`fail` `torchship_request_duration_seconds` split by
//! `torchship_request_failure_duration_seconds`, `queue` and `compute_*` the queue and compute
//! histograms. Their counts are what those series count: `queue` one per request that reached a
//! forward thread, `compute_*` one per forward pass (Triton counts compute per request).
//! `batch_stats` come from per-batch-size counters that only this extension reads.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use prometheus::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

use super::v2::ModelPath;
use crate::error::ApiError;
use crate::runtime::Model;
use crate::state::AppState;

/// A count and a total time (Triton's `$duration_stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

impl Duration {
    fn of(h: &Histogram) -> Duration {
        Duration {
            count: h.get_sample_count(),
            ns: crate::metrics::nanos(h.get_sample_sum()),
        }
    }
}

/// `inference_stats`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct InferStats {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    /// No response cache here: always zero.
    pub cache_hit: Duration,
    pub cache_miss: Duration,
}

/// One `batch_stats` entry: forward passes of `batch_size` rows.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// One model version's statistics (Triton's `$model_stat`).
#[derive(Clone, Debug, Serialize)]
pub struct ModelStats {
    pub name: String,
    pub version: String,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStats,
    pub batch_stats: Vec<BatchStats>,
    /// Not measured per model: empty.
    pub memory_usage: Vec<Value>,
    /// No decoupled models: empty.
    pub response_stats: Map<String, Value>,
}

/// The statistics of one model version, now.
pub fn of(model: &Model) -> ModelStats {
    let m = &model.metrics;
    let all = Duration::of(&m.request_duration);
    let fail = Duration::of(&m.failure_duration);
    let success = Duration {
        count: all.count.saturating_sub(fail.count),
        ns: all.ns.saturating_sub(fail.ns),
    };
    let batch_stats = m
        .stats
        .by_batch_size()
        .into_iter()
        .map(|(rows, [passes, input, infer, output])| {
            let d = |ns| Duration { count: passes, ns };
            BatchStats {
                batch_size: rows,
                compute_input: d(input),
                compute_infer: d(infer),
                compute_output: d(output),
            }
        })
        .collect();
    ModelStats {
        name: model.name.clone(),
        version: model.version.to_string(),
        last_inference: m
            .stats
            .last_inference_ms
            .load(std::sync::atomic::Ordering::Relaxed),
        inference_count: m.rows.get(),
        execution_count: m.executions.get(),
        inference_stats: InferStats {
            success,
            fail,
            queue: Duration::of(&m.queue_duration),
            compute_input: Duration::of(&m.compute_input),
            compute_infer: Duration::of(&m.compute_forward),
            compute_output: Duration::of(&m.compute_output),
            ..InferStats::default()
        },
        batch_stats,
        memory_usage: Vec::new(),
        response_stats: Map::new(),
    }
}

/// Every version of every model (no name), every version of one, or the one named (HTTP and
/// gRPC); an unknown model or version is the registry's error.
pub fn select(
    state: &AppState,
    name: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<ModelStats>, ApiError> {
    let models: Vec<Arc<Model>> = match (name, version) {
        (None, _) => state.registry().models(),
        (Some(n), Some(v)) => vec![state.registry().lookup(n, Some(v))?],
        (Some(n), None) => {
            state.registry().lookup(n, None)?;
            let entry = state.registry().entry(n);
            entry
                .map(|e| e.versions.into_values().collect())
                .unwrap_or_default()
        }
    };
    Ok(models.iter().map(|m| of(m)).collect())
}

/// `{"model_stats": [...]}`.
#[derive(Serialize)]
pub struct StatsResponse {
    pub model_stats: Vec<ModelStats>,
}

pub async fn all(State(state): State<AppState>) -> Result<Json<StatsResponse>, ApiError> {
    let model_stats = select(&state, None, None)?;
    Ok(Json(StatsResponse { model_stats }))
}

pub async fn model(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<StatsResponse>, ApiError> {
    let model_stats = select(&state, Some(&path.model), path.version.as_deref())?;
    Ok(Json(StatsResponse { model_stats }))
}
