//! `POST /predict`: the shortest path for a single-input model (the body's format is in
//! `protocol::codec::predict`). The model is named in the body, so it is decoded in two steps:
//! parse, look the model up, then check the input against it.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use protocol::codec::predict;
use protocol::codec::Encoded;

use super::forward::{forward, observed, respond};
use super::read_body;
use crate::error::ApiError;
use crate::metrics::Protocol;
use crate::runtime::Model;
use crate::state::AppState;

pub async fn predict(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    // Admitted before the body is read; the model is named in the body, so an overloaded /predict
    // is counted in the HTTP metrics (429) but under no model.
    let _permit = super::admit(&state)?;
    let body = read_body(body, state.max_body_size()).await?;
    let request = predict::parse_predict(&body)?;
    let model = state
        .registry()
        .lookup(&request.model, request.version.as_deref())?;
    observed(
        &state,
        &model,
        Protocol::Http,
        predict_on(&state, &model, &request),
    )
    .await
}

async fn predict_on(
    state: &AppState,
    model: &Model,
    request: &predict::PredictRequest,
) -> Result<Response, ApiError> {
    let signature = model.config.signature();
    let input = request.decode(&signature)?;
    let outputs = forward(state, model, vec![input], None, None).await?;
    let body = predict::encode_predict(&signature, &model.name, model.version, &outputs[0])?;
    Ok(respond(Encoded {
        body,
        header_length: None,
    }))
}
