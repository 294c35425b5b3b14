//! The repository extension: `index` always; `load`/`unload` only under `--model-control explicit`
//! (loading TorchScript runs code from the file), with model names that cannot leave the repository.
//! With a control key configured, all three require it ([`crate::control_key`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::read_body;
use crate::error::ApiError;
use crate::registry::IndexRow;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
struct IndexRequest {
    /// Only models that are (or are not) ready.
    ready: Option<bool>,
}

/// The control key, when one is configured (HTTP headers, or gRPC metadata as headers).
pub fn restricted(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.config().control_key {
        Some(key) => Ok(key.check(headers)?),
        None => Ok(()),
    }
}

pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<IndexRow>>, ApiError> {
    restricted(&state, &headers)?;
    let body = read_body(body, 64 << 10).await?;
    let request: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| protocol::CodecError::Malformed(e.to_string()))?
    };
    Ok(Json(index_rows(&state, request.ready)))
}

/// The repository index (HTTP and gRPC), only the models that are (`Some(true)`) or are not
/// (`Some(false)`) ready when asked.
pub fn index_rows(state: &AppState, ready: Option<bool>) -> Vec<IndexRow> {
    state
        .registry()
        .index()
        .into_iter()
        .filter(|r| ready.is_none_or(|want| (r.state == "READY") == want))
        .collect()
}

pub async fn load(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    restricted(&state, &headers)?;
    state.registry().load(&model).await?;
    Ok(Json(json!({})))
}

pub async fn unload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    restricted(&state, &headers)?;
    state.registry().unload(&model).await?;
    Ok(Json(json!({})))
}
