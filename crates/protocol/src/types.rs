//! Request and response bodies of the v2 REST API, as they travel in JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `parameters` objects are free-form in the protocol.
pub type Parameters = Map<String, Value>;

/// `POST /v2/models/{m}/infer` body (the JSON part when the binary extension is used); `data` is
/// generic so a client can serialise straight from tensor bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InferRequest<D = Value> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    pub inputs: Vec<RequestInput<D>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor. `datatype` stays a string so that an unknown name gets a precise error.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestInput<D = Value> {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    // No `default`: serde would then require `D: Default`; a missing `Option` is `None` anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
}

/// One requested output.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// Response body; `data` is generic so the server can serialise straight from tensor bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InferResponse<D = Value> {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    pub outputs: Vec<ResponseOutput<D>>,
}

/// One output tensor of a response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResponseOutput<D = Value> {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
}

/// Tensor description in model metadata; `-1` marks a variable dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{m}` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// Every error body: `error` for people, `error_type` (a stable string) for programs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}
