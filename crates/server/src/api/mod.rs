//! The HTTP layer: one file per route group, all sharing [`AppState`] and [`ApiError`].
//!
//! - [`health`]: liveness and readiness for people and Kubernetes probes.
//! - [`v2`]: the KServe v2 / Open Inference Protocol endpoints.
//! - [`predict`]: the simple `POST /predict`.

pub mod health;
pub mod predict;
pub mod v2;

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::model_metadata),
        )
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::model_ready),
        )
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer),
        )
        .route("/predict", post(predict::predict))
        .with_state(state)
}

/// Reads a whole body up to `limit` bytes; more is a 413, without reading the rest.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::BodyRead(e.to_string())),
    }
}
