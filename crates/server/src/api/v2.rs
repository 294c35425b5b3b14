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
use crate::registry::RegistryError;
use crate::repository::{config::PLATFORM, ModelConfig, TensorSpec};
use crate::state::AppState;

/// Extensions this server really implements.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_repository"];

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

pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "torchship".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
    })
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let model = state
        .registry()
        .lookup(&path.model, path.version.as_deref())?;
    let versions = match &path.version {
        Some(v) => vec![v.clone()],
        None => state
            .registry()
            .entry(&path.model)
            .map(|e| e.versions.keys().map(|v| v.to_string()).collect())
            .unwrap_or_default(),
    };
    Ok(Json(ModelMetadata {
        name: model.name.clone(),
        versions,
        platform: PLATFORM.into(),
        inputs: tensors(&model.config.inputs),
        outputs: tensors(&model.config.outputs),
    }))
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

pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let ready = match state
        .registry()
        .lookup(&path.model, path.version.as_deref())
    {
        Ok(model) => model.is_ready(),
        Err(RegistryError::Unavailable(_)) => false,
        Err(e) => return Err(e.into()),
    };
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
    observed(&state, &model, async {
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
