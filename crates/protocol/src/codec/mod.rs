//! The v2 codec: bytes on the wire <-> [`Tensor`]s, checked against a model's [`Signature`]. No
//! HTTP and no libtorch here; the server and the load tester both call it, so neither can drift
//! from the other.
//!
//! - [`request`]: an infer request in any framing (JSON, JSON + binary tensors, raw binary body,
//!   gRPC's tensors as bytes) decoded into one [`Decoded`] value (server), and encoded from tensors
//!   (client).
//! - [`response`]: an infer response encoded as JSON or binary (server) and decoded (client).
//! - [`classify`]: the classification extension (an output's top classes as BYTES).
//! - [`predict`]: the `/predict` shortcut, both ways.
//!
//! Every check that can be made before a tensor exists (names, datatypes, shapes, batch size,
//! element and byte counts with overflow-safe arithmetic) is made here, so a bad request never
//! reaches the runtime.

pub mod classify;
pub mod predict;
pub mod request;
pub mod response;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::{element_count, Parameters, Signature, TensorSpec};

pub use request::{
    decode_binary, decode_request, encode_request, header_length, BinaryInput, BinaryRequest,
    Decoded, OutputChoice,
};
pub use response::{chosen_outputs, decode_response, encode_response, DecodedResponse};

/// Why bytes could not be decoded or encoded. Every message names what is wrong.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The body is not valid JSON, or not the expected JSON shape.
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// Valid JSON (or framing) that does not fit the model: names, shapes, datatypes, counts.
    #[error("{0}")]
    Invalid(String),
    /// A response could not be serialised (a bug, not the client's fault).
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

impl CodecError {
    /// Stable label used as `error_type` and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Malformed(_) => "malformed_json",
            CodecError::Invalid(_) => "invalid_input",
            CodecError::Encode(_) => "encode_failed",
        }
    }

    /// One value of each variant, so that lists of kinds can be derived rather than copied.
    pub fn one_of_each() -> Vec<CodecError> {
        let s = || String::from("x");
        vec![
            CodecError::Malformed(s()),
            CodecError::Invalid(s()),
            CodecError::Encode(s()),
        ]
    }
}

/// An encoded body, and the binary extension's header value when binary data follows the JSON.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub body: Vec<u8>,
    /// The JSON header's length, sent as `inference-header-content-length`.
    pub header_length: Option<usize>,
}

impl Encoded {
    /// `header` as JSON, followed by `blobs` when there are any.
    fn new(header: &impl serde::Serialize, blobs: &[&[u8]]) -> Result<Encoded, CodecError> {
        let mut body = serde_json::to_vec(header).map_err(|e| CodecError::Encode(e.to_string()))?;
        if blobs.is_empty() {
            return Ok(Encoded {
                body,
                header_length: None,
            });
        }
        let header_length = body.len();
        body.reserve(blobs.iter().map(|b| b.len()).sum());
        for b in blobs {
            body.extend_from_slice(b);
        }
        Ok(Encoded {
            body,
            header_length: Some(header_length),
        })
    }

    /// The content type that goes with the body.
    pub fn content_type(&self) -> &'static str {
        match self.header_length {
            Some(_) => crate::wire::OCTET_STREAM,
            None => crate::wire::JSON,
        }
    }
}

/// A boolean parameter (`binary_data_output`, `binary_data`).
fn param_bool(params: Option<&Parameters>, key: &str) -> Option<bool> {
    params.and_then(|p| p.get(key)).and_then(Value::as_bool)
}

/// An unsigned integer parameter (`binary_data_size`, `timeout`, `priority`).
fn param_u64(params: Option<&Parameters>, key: &str) -> Result<Option<u64>, CodecError> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            CodecError::Invalid(format!(
                "parameter '{key}' must be a non-negative integer, got {v}"
            ))
        }),
    }
}

/// `{key: value}` as a parameters object.
fn params(key: &str, value: impl Into<Value>) -> Parameters {
    let mut p = Parameters::new();
    p.insert(key.to_string(), value.into());
    p
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `shape` against the spec and the batch limit; returns the element count.
pub fn check_shape(sig: &Signature, spec: &TensorSpec, shape: &[u64]) -> Result<usize, CodecError> {
    let bad = |why: String| CodecError::Invalid(format!("input '{}': {why}", spec.name));
    if shape.len() != spec.shape.len() {
        return Err(bad(format!(
            "shape {shape:?} has {} dimensions, the model expects {} ({:?})",
            shape.len(),
            spec.shape.len(),
            spec.shape
        )));
    }
    for (i, (&got, &want)) in shape.iter().zip(&spec.shape).enumerate() {
        if want >= 0 && got != want as u64 {
            return Err(bad(format!(
                "dimension {i} is {got}, the model expects {want} (shape {:?})",
                spec.shape
            )));
        }
    }
    if sig.batched() {
        let rows = shape[0];
        if rows == 0 || rows > sig.max_batch_size as u64 {
            return Err(bad(format!(
                "batch of {rows} rows; this model takes 1 to {} rows per request",
                sig.max_batch_size
            )));
        }
    }
    element_count(shape)
        .filter(|n| n.checked_mul(spec.datatype.size().unwrap_or(1)).is_some())
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))
}
