//! `POST /predict`: the shortest path for a single-input model.
//!
//! `{"model": "digits", "inputs": [[...64 numbers...], ...]}` (or one row as a flat list) answers
//! `{"model", "model_version", "outputs": [[...], ...], "classes": [argmax per row]}`, where `outputs`
//! is the model's first output, one list per row; `classes` is present for 2-D float outputs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{check_shape, CodecError};
use crate::{json_to_bytes, Datatype, RawData, Signature, Tensor};

/// A `/predict` body, parsed but not yet checked against the model it names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
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

#[derive(Serialize)]
struct PredictBody<'a> {
    model: &'a str,
    inputs: Inputs<'a>,
}

/// A batched model's rows as nested lists; an unbatched model's one tensor as a flat list.
#[derive(Serialize)]
#[serde(untagged)]
enum Inputs<'a> {
    Rows(Vec<RawData<'a>>),
    Flat(RawData<'a>),
}

/// Parses a `/predict` body (server side); [`PredictRequest::decode`] checks it.
pub fn parse_predict(body: &[u8]) -> Result<PredictRequest, CodecError> {
    serde_json::from_slice(body).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Shape of a nested JSON array, read along its first elements (the nesting check catches
/// raggedness).
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

impl PredictRequest {
    /// The one input tensor, checked against the model's single input.
    pub fn decode(&self, sig: &Signature) -> Result<Tensor, CodecError> {
        let [spec] = sig.inputs else {
            return Err(CodecError::Invalid(format!(
                "/predict serves single-input models; '{}' has {} inputs: use /v2/models/{}/infer",
                self.model,
                sig.inputs.len(),
                self.model
            )));
        };
        let mut shape = nested_shape(&self.inputs);
        if sig.batched() && shape.len() + 1 == spec.shape.len() {
            shape.insert(0, 1); // one row given without the batch dimension
        }
        check_shape(sig, spec, &shape)?;
        let mut bytes = Vec::new();
        json_to_bytes(&self.inputs, spec.datatype, &shape, &mut bytes)
            .map_err(|e| CodecError::Invalid(format!("inputs: {e}")))?;
        Ok(Tensor {
            datatype: spec.datatype,
            shape,
            bytes: bytes.into(),
        })
    }
}

/// Splits a tensor into its rows (one row for an unbatched model).
fn rows(t: &Tensor, batched: bool) -> Vec<RawData<'_>> {
    let n = if batched {
        t.shape.first().copied().unwrap_or(1).max(1) as usize
    } else {
        1
    };
    let row_bytes = (t.bytes.len() / n).max(1);
    t.bytes
        .chunks(row_bytes)
        .map(|bytes| RawData {
            datatype: t.datatype,
            bytes,
        })
        .collect()
}

/// Encodes the answer (server side) from the model's first output.
pub fn encode_predict(
    sig: &Signature,
    model: &str,
    version: u64,
    first: &Tensor,
) -> Result<Vec<u8>, CodecError> {
    let response = PredictResponse {
        model,
        model_version: version.to_string(),
        outputs: rows(first, sig.batched()),
        classes: argmax_rows(first),
    };
    serde_json::to_vec(&response).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes a `/predict` body (client side): a batched model's rows as nested lists, an unbatched
/// model's input flat.
pub fn encode_predict_request(
    model: &str,
    input: &Tensor,
    batched: bool,
) -> Result<Vec<u8>, CodecError> {
    let inputs = match batched {
        true => Inputs::Rows(rows(input, true)),
        false => Inputs::Flat(RawData {
            datatype: input.datatype,
            bytes: &input.bytes,
        }),
    };
    let body = PredictBody { model, inputs };
    serde_json::to_vec(&body).map_err(|e| CodecError::Encode(e.to_string()))
}

fn argmax_rows(out: &Tensor) -> Option<Vec<usize>> {
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
    let argmax = |row: &[f64]| {
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
    };
    Some(values.chunks(out.shape[1] as usize).map(argmax).collect())
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
        let t = Tensor {
            datatype: Datatype::Fp32,
            shape: vec![2, 3],
            bytes: vals.into(),
        };
        assert_eq!(argmax_rows(&t), Some(vec![1, 0]));
        let t = Tensor {
            datatype: Datatype::Int64,
            shape: vec![1, 1],
            bytes: vec![0; 8].into(),
        };
        assert_eq!(argmax_rows(&t), None);
    }
}
