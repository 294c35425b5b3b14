//! The HTTP layer: one file per route group, all sharing [`AppState`] and [`ApiError`].
//!
//! - [`health`]: liveness and readiness for people and Kubernetes probes.
//! - [`v2`]: the KServe v2 / Open Inference Protocol endpoints, binary tensor extension included.
//! - [`grpc`]: the same protocol over gRPC (`inference.GRPCInferenceService`), on its own port;
//!   [`grpc_health`]: `grpc.health.v1` beside it, following readiness; [`grpc_extensions`]: the
//!   statistics and logging extensions as its messages.
//! - [`repository`]: the repository extension (`index`, `load`, `unload`).
//! - [`stats`]: the statistics extension (`/v2/models/.../stats`), from the metrics' counters.
//! - [`settings`]: the logging extension (`/v2/logging`); trace settings and shared memory
//!   answered as deliberate `not_supported` errors.
//! - [`predict`]: the simple `POST /predict`.
//! - [`forward`]: what the inference handlers share after decoding: outcome counting, deadline and
//!   priority, the runtime call, the encoded response.
//! - [`observe`]: request ids, access log, HTTP metrics.

pub mod forward;
pub mod grpc;
pub mod grpc_extensions;
pub mod grpc_health;
pub mod health;
pub mod observe;
pub mod predict;
pub mod repository;
pub mod settings;
pub mod stats;
pub mod v2;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::BytesMut;
use http_body_util::BodyExt;
use tower_http::compression::{predicate::SizeAbove, CompressionLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use crate::error::ApiError;
use crate::state::AppState;

/// Admission to the inference routes: one in-flight limit (`--max-inflight`, a second line behind
/// the per-model queues) that answers 429 at once instead of queueing, taken before the body is
/// read. The permit is held until the answer is ready. Health and metrics never take one, so probes
/// and scrapes still answer under overload.
pub fn admit(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state
        .inflight()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded)
}

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    let body_timeout = state.config().body_timeout;
    Router::new()
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer),
        )
        .route("/predict", post(predict::predict))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::model_metadata),
        )
        .route("/v2/models/{model}/config", get(v2::model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(v2::model_config),
        )
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::model_ready),
        )
        .route("/v2/models/stats", get(stats::all))
        .route("/v2/models/{model}/stats", get(stats::model))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(stats::model),
        )
        .route(
            "/v2/logging",
            get(settings::get_logging).post(settings::set_logging),
        )
        .route("/v2/trace/setting", any(settings::trace))
        .route("/v2/models/{model}/trace/setting", any(settings::trace))
        .route(
            "/v2/systemsharedmemory/{*call}",
            any(settings::shared_memory),
        )
        .route("/v2/cudasharedmemory/{*call}", any(settings::shared_memory))
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository::unload),
        )
        .fallback(not_found)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        // Outside the body timeout, so the deadline and the size limit (`read_body`) count the
        // inflated bytes: a small compressed body that inflates past the limit is a 413 read in
        // bounded memory, like any other.
        .layer(RequestDecompressionLayer::new().gzip(true).deflate(true))
        .layer(axum::middleware::from_fn(json_rejections))
        // Outside json_rejections, which reads the router's plain-text answers before this
        // compresses anything.
        .layer(CompressionLayer::new().compress_when(SizeAbove::new(COMPRESS_ABOVE)))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// Responses smaller than this are sent as they are even when the client accepts gzip or deflate:
/// below about a kilobyte compressing costs more time than the bytes it saves on a network.
const COMPRESS_ABOVE: u16 = 1024;

/// Only `GET /metrics`, for `--metrics-port`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let cuda: std::collections::BTreeSet<usize> = state
        .registry()
        .models()
        .iter()
        .filter_map(|m| match m.device {
            tch::Device::Cuda(i) => Some(i),
            _ => None,
        })
        .collect();
    state.metrics().refresh_cuda(cuda);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().encode(),
    )
}

/// The router's own answers (an empty 405 for a known path with another method, a plain-text
/// 400 for a path parameter it cannot decode, the decompression layer's empty 415 for a
/// Content-Encoding other than gzip and deflate) as the same `{"error", "error_type"}` JSON as every
/// other error, `Allow` kept; inside `observe`, so they are counted like the rest.
async fn json_rejections(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Cheap clones (`Method` is an enum, `Uri` shares its bytes); strings only for a 405.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let ours = [
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::BAD_REQUEST,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    ];
    if is_json || !ours.contains(&status) {
        return response;
    }
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // The decompression layer's answer; it lists what it takes in Accept-Encoding.
        let accepted = response.headers().get(header::ACCEPT_ENCODING).cloned();
        let mut json = ApiError::UnsupportedEncoding.into_response();
        json.headers_mut()
            .extend(accepted.map(|v| (header::ACCEPT_ENCODING, v)));
        return json;
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // axum's method router sets `Allow` on the answer after this layer has run.
        let (method, path) = (method.to_string(), uri.path().to_string());
        return ApiError::MethodNotAllowed { method, path }.into_response();
    }
    let body = response.into_body();
    // Rejection texts are short; anything longer is cut rather than read whole.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    ApiError::BadRequest(String::from_utf8_lossy(&text).trim().to_string()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NoSuchEndpoint(uri.path().to_string())
}

/// How much of an oversized body is still read (and dropped) after the limit: a client that is
/// still sending cannot read the 413 if the server stops reading and closes (it sees a broken pipe
/// or a reset instead). Past this much, or after `--body-timeout` without data, the server gives up
/// and the connection is closed. It costs bandwidth, never memory.
const DRAIN_AFTER_LIMIT: usize = 256 << 20;

/// Reads a whole body up to `limit` bytes; more is a 413, sent after the rest is drained (bounded).
pub async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(body_error)?.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > limit {
            drain(body, DRAIN_AFTER_LIMIT).await;
            return Err(ApiError::PayloadTooLarge(limit));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Reads and drops up to `budget` more bytes of the body; stops early on an error or its end.
async fn drain(mut body: Body, budget: usize) {
    let mut left = budget;
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map_or(0, |d| d.len());
        if n >= left {
            return;
        }
        left -= n;
    }
}

fn body_error(e: axum::Error) -> ApiError {
    if caused_by::<TimeoutError>(&e) {
        ApiError::BodyTimeout
    } else {
        ApiError::BodyRead(e.to_string())
    }
}

fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<E>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}
