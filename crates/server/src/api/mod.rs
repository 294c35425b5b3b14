//! The HTTP layer: one file per route group, all sharing [`AppState`] and [`ApiError`].
//!
//! - [`health`]: liveness and readiness for people and Kubernetes probes.
//! - [`v2`]: the KServe v2 / Open Inference Protocol endpoints, binary tensor extension included.
//! - [`repository`]: the repository extension (`index`, `load`, `unload`).
//! - [`predict`]: the simple `POST /predict`.
//! - [`observe`]: request ids, access log, HTTP metrics.

pub mod health;
pub mod observe;
pub mod predict;
pub mod repository;
pub mod v2;

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::BoxError;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route the server answers. Inference routes share one in-flight limit (a second line behind
/// the per-model queues) that answers 429 at once instead of queueing; health and metrics are
/// outside it, so probes and scrapes still answer under overload.
pub fn router(state: AppState) -> Router {
    let inference = Router::new()
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer),
        )
        .route("/predict", post(predict::predict))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    ApiError::Overloaded
                }))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                    state.inflight(),
                )),
        );
    let body_timeout = state.config().body_timeout;
    Router::new()
        .merge(inference)
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
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository::unload),
        )
        .fallback(not_found)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// Only `GET /metrics`, for `--metrics-port`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let cuda: std::collections::BTreeSet<usize> = state
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

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::ModelNotFound(format!("no such endpoint: {}", uri.path()))
}

/// Reads a whole body up to `limit` bytes; more is a 413, without reading the rest.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) if caused_by::<TimeoutError>(e.as_ref()) => Err(ApiError::BodyTimeout),
        Err(e) => Err(ApiError::BodyRead(e.to_string())),
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
