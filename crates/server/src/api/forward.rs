//! What the inference handlers share once a request is decoded: counting its outcome, its deadline
//! and priority level, the call into the runtime, and an encoded body as an HTTP response.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use protocol::codec::Encoded;
use protocol::wire;

use crate::error::ApiError;
use crate::metrics::Protocol;
use crate::runtime::{Deadline, Model, TensorData};
use crate::state::AppState;

/// Runs one inference request of `model`, counting its outcome (`success` or the error kind, by
/// protocol) and its duration in the model's metrics.
pub async fn observed<T>(
    state: &AppState,
    model: &Model,
    protocol: Protocol,
    request: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    model.metrics.stats.touch();
    let result = request.await;
    let outcome = result
        .as_ref()
        .map(|_| "success")
        .unwrap_or_else(|e| e.kind());
    state
        .metrics()
        .request(&model.name, model.version, protocol, outcome);
    let seconds = started.elapsed().as_secs_f64();
    model.metrics.request_duration.observe(seconds);
    if result.is_err() {
        model.metrics.failure_duration.observe(seconds);
    }
    result
}

/// The server's deadline, shortened (never lengthened) by the client's own timeout.
fn deadline(state: &AppState, timeout: Option<Duration>) -> Deadline {
    let now = tokio::time::Instant::now();
    let server = state.config().default_timeout;
    match timeout {
        Some(t) if t < server => Deadline {
            at: now + t,
            client: true,
        },
        _ => Deadline {
            at: now + server,
            client: false,
        },
    }
}

/// Queues `inputs` on the model with the request's deadline and priority level.
pub async fn forward(
    state: &AppState,
    model: &Model,
    inputs: Vec<TensorData>,
    timeout: Option<Duration>,
    priority: Option<u64>,
) -> Result<Vec<TensorData>, ApiError> {
    let batching = &model.config.batching;
    let level = batching.level(priority).ok_or_else(|| {
        ApiError::InvalidInput(format!(
            "priority {} is not within 0..={} (the model's priority_levels)",
            priority.unwrap_or(0),
            batching.priority_levels
        ))
    })?;
    let deadline = deadline(state, timeout);
    Ok(model.infer(inputs, Some(deadline), level).await?)
}

/// An encoded body with its content type and, for binary data, the header length.
pub fn respond(encoded: Encoded) -> Response {
    let content_type = encoded.content_type();
    let mut response = ([(header::CONTENT_TYPE, content_type)], encoded.body).into_response();
    if let Some(n) = encoded.header_length {
        response
            .headers_mut()
            .insert(wire::HEADER_LENGTH, HeaderValue::from(n));
    }
    response
}
