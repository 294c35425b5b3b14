//! KServe v2 endpoints: server and model metadata, model readiness and config, inference (JSON and the
//! binary tensor data extension).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{InferRequest, ModelMetadata, RequestInput, ServerMetadata, TensorMetadata};
use serde::Deserialize;
use serde_json::json;

use super::read_body;
use crate::error::ApiError;
use crate::inference::{self, param_u64};
use crate::repository::{config::PLATFORM, ModelConfig, TensorSpec};
use crate::runtime::{Deadline, Model};
use crate::state::AppState;

/// The binary tensor data extension's framing header.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

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
    let model = state.lookup(&path.model, path.version.as_deref())?;
    let versions = match &path.version {
        Some(v) => vec![v.clone()],
        None => state
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
    let model = state.lookup(&path.model, path.version.as_deref())?;
    Ok(Json(model.config.as_ref().clone()))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Response, ApiError> {
    let ready = match state.lookup(&path.model, path.version.as_deref()) {
        Ok(model) => model.is_ready(),
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => false,
        Err(e) => return Err(e),
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
    let model = state.lookup(&path.model, path.version.as_deref())?;
    observed(&state, &model, async {
        let _permit = super::admit(&state)?;
        infer_on(&state, &model, &headers, body).await
    })
    .await
}

/// Runs one inference request of `model`, counting its outcome (`success` or the error kind) and
/// its duration in the model's metrics.
pub async fn observed(
    state: &AppState,
    model: &Model,
    request: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = request.await;
    let outcome = result
        .as_ref()
        .map(|_| "success")
        .unwrap_or_else(|e| e.kind());
    state.metrics().request(&model.name, model.version, outcome);
    model
        .metrics
        .request_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn infer_on(
    state: &AppState,
    model: &Model,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, state.max_body_size()).await?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidInput(format!(
                        "{HEADER_LENGTH} must be a byte count, got {v:?}"
                    ))
                })?,
        ),
    };
    let parse = |json: &[u8]| {
        serde_json::from_slice::<InferRequest>(json)
            .map_err(|e| ApiError::MalformedJson(e.to_string()))
    };
    let (request, binary) = match header_length {
        None => (parse(&body)?, body.slice(..0)),
        Some(0) => (raw_request(&model.config, body.len())?, body.clone()),
        Some(n) if n <= body.len() => (parse(&body[..n])?, body.slice(n..)),
        Some(n) => {
            return Err(ApiError::InvalidInput(format!(
                "{HEADER_LENGTH} is {n} but the body has only {} bytes",
                body.len()
            )))
        }
    };
    let prepared = inference::prepare(&model.config, &request, &binary)?;
    let deadline = deadline(state, &request)?;
    let priority = param_u64(request.parameters.as_ref(), "priority")?;
    let level = model.config.batching.level(priority).ok_or_else(|| {
        ApiError::InvalidInput(format!(
            "priority {} is not within 0..={} (the model's priority_levels)",
            priority.unwrap_or(0),
            model.config.batching.priority_levels
        ))
    })?;
    let outputs = model.infer(prepared.inputs, Some(deadline), level).await?;
    let (header, blobs) = inference::respond(
        &model.config,
        &model.name,
        model.version,
        request.id,
        &prepared.outputs,
        &outputs,
    );
    let json = serde_json::to_vec(&header)
        .map_err(|e| ApiError::Runtime(crate::runtime::RuntimeError::Tensor(e.to_string())))?;
    if blobs.is_empty() {
        return Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response());
    }
    let json_len = json.len();
    let mut body = json;
    body.reserve(blobs.iter().map(|b| b.len()).sum());
    for b in blobs {
        body.extend_from_slice(b);
    }
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    response
        .headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_len));
    Ok(response)
}

/// `Inference-Header-Content-Length: 0`: the whole body is the raw bytes of the single input of a
/// single-input model, one row; all outputs come back binary.
fn raw_request(config: &ModelConfig, len: usize) -> Result<InferRequest, ApiError> {
    let [spec] = config.inputs.as_slice() else {
        return Err(ApiError::InvalidInput(format!(
            "a raw binary request ({HEADER_LENGTH}: 0) needs a single-input model; this one has {} inputs",
            config.inputs.len()
        )));
    };
    let mut shape = Vec::with_capacity(spec.shape.len());
    for (i, &d) in spec.shape.iter().enumerate() {
        match d {
            -1 if i == 0 && config.max_batch_size > 0 => shape.push(1),
            d if d >= 0 => shape.push(d as u64),
            _ => {
                return Err(ApiError::InvalidInput(format!(
                    "a raw binary request cannot say the size of dimension {i} of input '{}' ({:?}): send a JSON header",
                    spec.name, spec.shape
                )))
            }
        }
    }
    Ok(InferRequest {
        inputs: vec![RequestInput {
            name: spec.name.clone(),
            shape,
            datatype: spec.datatype.to_string(),
            parameters: json!({ "binary_data_size": len }).as_object().cloned(),
            data: None,
        }],
        parameters: json!({ "binary_data_output": true }).as_object().cloned(),
        ..Default::default()
    })
}

/// The server's deadline, shortened (never lengthened) by the request's `timeout` parameter (µs).
pub fn deadline(state: &AppState, request: &InferRequest) -> Result<Deadline, ApiError> {
    let now = tokio::time::Instant::now();
    let server = state.config().default_timeout;
    Ok(match param_u64(request.parameters.as_ref(), "timeout")? {
        Some(us) if std::time::Duration::from_micros(us) < server => Deadline {
            at: now + std::time::Duration::from_micros(us),
            client: true,
        },
        _ => Deadline {
            at: now + server,
            client: false,
        },
    })
}
