//! `POST /predict`: the shortest path for a single-input model.
//!
//! `{"model": "digits", "inputs": [[...64 numbers...], ...]}` (or one row as a flat list) answers
//! `{"model", "model_version", "outputs": [[...], ...], "classes": [argmax per row]}`, where `outputs`
//! is the model's first output, one list per row; `classes` is present for 2-D float outputs.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use protocol::{json_to_bytes, Datatype, RawData};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::read_body;
use super::v2::{deadline, observed};
use crate::error::ApiError;
use crate::inference::check_shape;
use crate::runtime::{Model, TensorData};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    model: String,
    #[serde(default)]
    version: Option<String>,
    inputs: Value,
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    model_version: String,
    outputs: Vec<RawData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<Vec<usize>>,
}

/// Shape of a nested JSON array, read along its first elements (raggedness is caught by the count).
fn nested_shape(v: &Value) -> Vec<u64> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Value::Array(items) = cur {
        shape.push(items.len() as u64);
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    shape
}

fn argmax_rows(out: &TensorData) -> Option<Vec<usize>> {
    if out.shape.len() != 2 || out.shape[1] == 0 {
        return None;
    }
    let values: Vec<f64> = match out.datatype {
        Datatype::Fp32 => out
            .bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)
            .collect(),
        Datatype::Fp64 => out
            .bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        _ => return None,
    };
    Some(
        values
            .chunks(out.shape[1] as usize)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
                        if x > best.1 {
                            (i, x)
                        } else {
                            best
                        }
                    })
                    .0
            })
            .collect(),
    )
}

pub async fn predict(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    // Admitted before the body is read; the model is named in the body, so an overloaded /predict
    // is counted in the HTTP metrics (429) but under no model.
    let _permit = super::admit(&state)?;
    let body = read_body(body, state.max_body_size()).await?;
    let request: PredictRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let model = state.lookup(&request.model, request.version.as_deref())?;
    observed(&state, &model, predict_on(&state, &model, &request.inputs)).await
}

async fn predict_on(state: &AppState, model: &Model, inputs: &Value) -> Result<Response, ApiError> {
    let config = &model.config;
    let [spec] = config.inputs.as_slice() else {
        return Err(ApiError::InvalidInput(format!(
            "/predict serves single-input models; '{}' has {} inputs: use /v2/models/{}/infer",
            model.name,
            config.inputs.len(),
            model.name
        )));
    };
    let mut shape = nested_shape(inputs);
    if config.max_batch_size > 0 && shape.len() + 1 == spec.shape.len() {
        shape.insert(0, 1); // one row given without the batch dimension
    }
    let count = check_shape(config, spec, &shape)?;
    let mut bytes = Vec::new();
    json_to_bytes(inputs, spec.datatype, count, &mut bytes)
        .map_err(|e| ApiError::InvalidInput(format!("inputs: {e}")))?;
    let deadline = deadline(state, &protocol::InferRequest::default())?;
    let input = TensorData {
        datatype: spec.datatype,
        shape,
        bytes: bytes.into(),
    };
    let level = config.batching.level(None).unwrap_or(0);
    let outputs = model.infer(vec![input], Some(deadline), level).await?;
    let first = &outputs[0];
    let rows = if config.max_batch_size > 0 {
        first.shape[0].max(1) as usize
    } else {
        1
    };
    let row_bytes = first.bytes.len() / rows;
    let response = PredictResponse {
        model: &model.name,
        model_version: model.version.to_string(),
        outputs: first
            .bytes
            .chunks(row_bytes.max(1))
            .map(|b| RawData {
                datatype: first.datatype,
                bytes: b,
            })
            .collect(),
        classes: argmax_rows(first),
    };
    let json = serde_json::to_vec(&response)
        .map_err(|e| ApiError::Runtime(crate::runtime::RuntimeError::Tensor(e.to_string())))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_follow_the_first_elements() {
        assert_eq!(nested_shape(&json!([[1, 2, 3], [4, 5, 6]])), vec![2, 3]);
        assert_eq!(nested_shape(&json!([1, 2])), vec![2]);
        assert_eq!(nested_shape(&json!(5)), Vec::<u64>::new());
        assert_eq!(nested_shape(&json!([])), vec![0]);
    }

    #[test]
    fn argmax_per_row() {
        let vals: Vec<u8> = [0.1f32, 0.9, 0.3, 2.0, -1.0, 0.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let t = TensorData {
            datatype: Datatype::Fp32,
            shape: vec![2, 3],
            bytes: vals.into(),
        };
        assert_eq!(argmax_rows(&t), Some(vec![1, 0]));
        let t = TensorData {
            datatype: Datatype::Int64,
            shape: vec![1, 1],
            bytes: vec![0; 8].into(),
        };
        assert_eq!(argmax_rows(&t), None);
    }
}
