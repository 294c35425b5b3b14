//! What the codec converts between: a model's declared tensors ([`Signature`]) and tensors as
//! little-endian bytes ([`Tensor`]), the form the server's runtime and the load tester both use.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Datatype;

/// One declared input or output. `shape` includes the batch dimension as `-1` when batching;
/// `-1` elsewhere is a dimension of any size.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
    /// Outputs only: a file in the model's folder with one class label per line (Triton's
    /// `label_filename`), named in classification answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_filename: Option<String>,
    /// The lines of `label_filename`, read when the model is read (never from the config itself).
    #[serde(skip)]
    pub labels: Vec<String>,
}

impl TensorSpec {
    /// A spec without labels.
    pub fn new(name: &str, datatype: Datatype, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.to_string(),
            datatype,
            shape: shape.to_vec(),
            label_filename: None,
            labels: Vec::new(),
        }
    }
}

/// A model as the codec sees it: its tensors and its batch limit.
#[derive(Clone, Copy, Debug)]
pub struct Signature<'a> {
    pub inputs: &'a [TensorSpec],
    pub outputs: &'a [TensorSpec],
    /// Most rows one request may carry; 0 means the model takes no batch dimension.
    pub max_batch_size: usize,
}

/// A tensor as bytes: row-major, little-endian elements of `datatype`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub datatype: Datatype,
    pub shape: Vec<u64>,
    pub bytes: Bytes,
}

impl Signature<'_> {
    /// Whether requests carry a batch dimension first.
    pub fn batched(&self) -> bool {
        self.max_batch_size > 0
    }
}
