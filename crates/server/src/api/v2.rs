//! KServe v2 endpoints: server and model metadata, model readiness, inference.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{InferRequest, ModelMetadata, ServerMetadata, TensorMetadata};
use serde::Deserialize;
use serde_json::json;

use super::read_body;
use crate::error::ApiError;
use crate::inference;
use crate::repository::{config::PLATFORM, TensorSpec};
use crate::runtime::Model;
use crate::state::AppState;

/// `{model}` and the optional `{version}` path segments.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    pub model: String,
    pub version: Option<String>,
}

/// Finds the model, honouring an explicit version segment.
pub fn lookup(state: &AppState, path: &ModelPath) -> Result<Arc<Model>, ApiError> {
    let model = state
        .model(&path.model)
        .ok_or_else(|| ApiError::ModelNotFound(format!("unknown model '{}'", path.model)))?;
    match &path.version {
        Some(v) if *v != model.version.to_string() => Err(ApiError::ModelNotFound(format!(
            "model '{}' has no version '{v}' (serving version {})",
            path.model, model.version
        ))),
        _ => Ok(model),
    }
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
        extensions: vec![],
    })
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let model = lookup(&state, &path)?;
    Ok(Json(ModelMetadata {
        name: model.name.clone(),
        versions: vec![model.version.to_string()],
        platform: PLATFORM.into(),
        inputs: tensors(&model.config.inputs),
        outputs: tensors(&model.config.outputs),
    }))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let model = lookup(&state, &path)?;
    let ready = model.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(json!({ "name": model.name, "ready": ready }))).into_response())
}

pub async fn infer(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    body: Body,
) -> Result<Response, ApiError> {
    let model = lookup(&state, &path)?;
    let body = read_body(body, state.max_body_size()).await?;
    let request: InferRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let prepared = inference::prepare(&model.config, &request)?;
    let outputs = model.infer(prepared.inputs).await?;
    let response = inference::respond(
        &model.config,
        &model.name,
        model.version,
        request.id,
        &prepared.outputs,
        &outputs,
    );
    let json = serde_json::to_vec(&response)
        .map_err(|e| ApiError::Runtime(crate::runtime::RuntimeError::Tensor(e.to_string())))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}
