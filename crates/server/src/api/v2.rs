//! KServe v2 endpoints: server and model metadata, model readiness and config, inference (JSON and the
//! binary tensor data extension).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{codec, wire, ModelMetadata, ServerMetadata, TensorMetadata};
use serde::Deserialize;
use serde_json::json;

use super::forward::{forward, observed, respond};
use super::read_body;
use crate::error::ApiError;
use crate::metrics::Protocol;
use crate::registry::RegistryError;
use crate::repository::{ModelConfig, TensorSpec};
use crate::state::AppState;

/// Extensions this server really implements (Triton's names); each has a call in
/// tests/fixtures/triton_extensions.py that works. `schedule_policy` is the `priority` and
/// `timeout` request parameters.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "logging",
    "model_configuration",
    "model_repository",
    "schedule_policy",
    "statistics",
];

/// `{model}` and the optional `{version}` path segments.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    pub model: String,
    pub version: Option<String>,
}

fn tensors(specs: &[TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.to_string(),
            shape: s.shape.clone(),
        })
        .collect()
}

/// The server's name, version and extensions (HTTP and gRPC).
pub fn server_info() -> ServerMetadata {
    ServerMetadata {
        name: "torchship".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
    }
}

pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(server_info())
}

/// A model's metadata (HTTP and gRPC): its versions, or only `version` when one is named.
pub fn metadata(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<ModelMetadata, ApiError> {
    let model = state.registry().lookup(name, version)?;
    let versions = match version {
        Some(v) => vec![v.to_string()],
        None => state
            .registry()
            .entry(name)
            .map(|e| e.versions.keys().map(|v| v.to_string()).collect())
            .unwrap_or_default(),
    };
    Ok(ModelMetadata {
        name: model.name.clone(),
        versions,
        platform: model.config.platform.name().into(),
        inputs: tensors(&model.config.inputs),
        outputs: tensors(&model.config.outputs),
    })
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<ModelMetadata>, ApiError> {
    metadata(&state, &path.model, path.version.as_deref()).map(Json)
}

/// The model's `config.toml`, as JSON (what `tritonclient`'s `get_model_config` reads).
pub async fn model_config(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<ModelConfig>, ApiError> {
    let model = state
        .registry()
        .lookup(&path.model, path.version.as_deref())?;
    Ok(Json(model.config.as_ref().clone()))
}

/// Whether a model (version) is ready (HTTP and gRPC); a model that does not exist is an error.
pub fn is_ready(state: &AppState, name: &str, version: Option<&str>) -> Result<bool, ApiError> {
    match state.registry().lookup(name, version) {
        Ok(model) => Ok(model.is_ready()),
        Err(RegistryError::Unavailable(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let ready = is_ready(&state, &path.model, path.version.as_deref())?;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(json!({ "name": path.model, "ready": ready }))).into_response())
}

pub async fn infer(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let model = state
        .registry()
        .lookup(&path.model, path.version.as_deref())?;
    observed(&state, &model, Protocol::Http, async {
        let _permit = super::admit(&state)?;
        let body = read_body(body, state.max_body_size()).await?;
        let framing = codec::header_length(headers.get(wire::HEADER_LENGTH).map(|v| v.as_bytes()))?;
        let signature = model.config.signature();
        let request = codec::decode_request(&signature, framing, body)?;
        let outputs = forward(
            &state,
            &model,
            request.inputs,
            request.timeout,
            request.priority,
        )
        .await?;
        let encoded = codec::encode_response(
            &signature,
            &model.name,
            model.version,
            request.id,
            &request.outputs,
            &outputs,
        )?;
        Ok(respond(encoded))
    })
    .await
}

#[cfg(test)]
mod tests {
    /// README's `GET /v2` row lists exactly the extensions served, in the same order.
    #[test]
    fn the_readme_lists_the_extensions_served() {
        let readme = include_str!("../../../../README.md");
        let row = readme
            .lines()
            .find(|l| l.starts_with("| `GET /v2` |"))
            .expect("README's GET /v2 row");
        let listed = row
            .split("\"extensions\":[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("an extensions list in that row");
        let listed: Vec<&str> = listed.split(',').map(|s| s.trim_matches('"')).collect();
        assert_eq!(listed, super::EXTENSIONS);
    }
}
