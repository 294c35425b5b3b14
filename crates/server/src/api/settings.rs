//! Triton's run-time settings and the extensions served as deliberate errors:
//!
//! - `GET/POST /v2/logging` (the logging extension, [`crate::logging`]): read and change the log
//!   level; a change needs the control key when one is configured.
//! - `GET/POST /v2[/models/{m}]/trace/setting`: there is no request tracer here, so a clear
//!   `not_supported` (501) instead of a 404 that looks like a typo.
//! - `/v2/systemsharedmemory/...`, `/v2/cudasharedmemory/...`: the same, with the reason.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{Map, Value};

use super::read_body;
use super::repository::restricted;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get_logging() -> Result<Json<Map<String, Value>>, ApiError> {
    crate::logging::settings().map(Json)
}

pub async fn set_logging(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Map<String, Value>>, ApiError> {
    restricted(&state, &headers)?;
    let body = read_body(body, 64 << 10).await?;
    let changes: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| protocol::CodecError::Malformed(format!("log settings: {e}")))?;
    crate::logging::update(&changes).map(Json)
}

/// Why trace settings are refused (HTTP and gRPC).
pub fn no_trace() -> ApiError {
    ApiError::NotSupported(
        "trace settings are not supported: torchship has no request tracer; per-request timing is in the access log (by request id), /metrics and the statistics extension (/v2/models/stats)"
            .into(),
    )
}

/// Why shared-memory calls are refused (HTTP and gRPC).
pub fn no_shared_memory() -> ApiError {
    ApiError::NotSupported(
        "shared memory is not supported: the server runs in its own container (a pod in Kubernetes) and shares no memory with its clients; send tensors in the request body (the binary_tensor_data extension)"
            .into(),
    )
}

pub async fn trace() -> ApiError {
    no_trace()
}

pub async fn shared_memory() -> ApiError {
    no_shared_memory()
}
