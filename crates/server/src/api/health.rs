//! Liveness never depends on models (a slow load must not get the pod killed); readiness waits for
//! every model that can load to be warmed up, and turns 503 the moment shutdown begins.

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.all_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
