//! From a v2 request to runtime tensors and back: every check that can be made before a tensor exists
//! (names, datatypes, shapes, batch size, element and byte counts with overflow-safe arithmetic) is made
//! here, so a bad request never reaches libtorch.

use protocol::{
    element_count, json_to_bytes, Datatype, InferRequest, InferResponse, RawData, ResponseOutput,
};

use crate::error::ApiError;
use crate::repository::{ModelConfig, TensorSpec};
use crate::runtime::TensorData;

/// A checked request: inputs in the model's declared order, and which outputs to return.
#[derive(Debug)]
pub struct Prepared {
    pub inputs: Vec<TensorData>,
    /// Indices into the model's outputs, in the order the client asked for them.
    pub outputs: Vec<usize>,
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `shape` against the spec and the batch limit; returns the element count.
pub fn check_shape(
    config: &ModelConfig,
    spec: &TensorSpec,
    shape: &[u64],
) -> Result<usize, ApiError> {
    let bad = |why: String| ApiError::InvalidInput(format!("input '{}': {why}", spec.name));
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
    if config.max_batch_size > 0 {
        let rows = shape[0];
        if rows == 0 || rows > config.max_batch_size as u64 {
            return Err(bad(format!(
                "batch of {rows} rows; this model takes 1 to {} rows per request",
                config.max_batch_size
            )));
        }
    }
    element_count(shape)
        .filter(|n| n.checked_mul(spec.datatype.size().unwrap_or(1)).is_some())
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))
}

/// Validates a JSON infer request against the model config and converts its data.
pub fn prepare(config: &ModelConfig, request: &InferRequest) -> Result<Prepared, ApiError> {
    let mut slots: Vec<Option<TensorData>> = vec![None; config.inputs.len()];
    for input in &request.inputs {
        let index = config
            .inputs
            .iter()
            .position(|s| s.name == input.name)
            .ok_or_else(|| {
                ApiError::InvalidInput(format!(
                    "unknown input '{}'; the model's inputs are: {}",
                    input.name,
                    names(&config.inputs)
                ))
            })?;
        let spec = &config.inputs[index];
        if slots[index].is_some() {
            return Err(ApiError::InvalidInput(format!(
                "input '{}' given twice",
                input.name
            )));
        }
        let datatype = Datatype::parse(&input.datatype).ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "input '{}': unknown datatype '{}'",
                input.name, input.datatype
            ))
        })?;
        if datatype != spec.datatype {
            return Err(ApiError::InvalidInput(format!(
                "input '{}': datatype {datatype} does not match the model's {}",
                input.name, spec.datatype
            )));
        }
        let count = check_shape(config, spec, &input.shape)?;
        let data = input.data.as_ref().ok_or_else(|| {
            ApiError::InvalidInput(format!("input '{}' has no 'data'", input.name))
        })?;
        let mut bytes = Vec::new();
        json_to_bytes(data, datatype, count, &mut bytes)
            .map_err(|e| ApiError::InvalidInput(format!("input '{}': {e}", input.name)))?;
        slots[index] = Some(TensorData {
            datatype,
            shape: input.shape.clone(),
            bytes,
        });
    }
    let inputs = finish_inputs(config, slots)?;
    let outputs = select_outputs(config, request)?;
    Ok(Prepared { inputs, outputs })
}

/// Every declared input must be present, and batched inputs must agree on the row count.
pub fn finish_inputs(
    config: &ModelConfig,
    slots: Vec<Option<TensorData>>,
) -> Result<Vec<TensorData>, ApiError> {
    let inputs = slots
        .into_iter()
        .zip(&config.inputs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| ApiError::InvalidInput(format!("missing input '{}'", spec.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if config.max_batch_size > 0 {
        let rows = inputs[0].shape[0];
        if let Some(other) = inputs.iter().find(|t| t.shape[0] != rows) {
            return Err(ApiError::InvalidInput(format!(
                "inputs disagree on the batch size ({rows} and {})",
                other.shape[0]
            )));
        }
    }
    Ok(inputs)
}

fn select_outputs(config: &ModelConfig, request: &InferRequest) -> Result<Vec<usize>, ApiError> {
    match &request.outputs {
        None => Ok((0..config.outputs.len()).collect()),
        Some(wanted) if wanted.is_empty() => Ok((0..config.outputs.len()).collect()),
        Some(wanted) => wanted
            .iter()
            .map(|o| {
                config
                    .outputs
                    .iter()
                    .position(|s| s.name == o.name)
                    .ok_or_else(|| {
                        ApiError::InvalidInput(format!(
                            "unknown output '{}'; the model's outputs are: {}",
                            o.name,
                            names(&config.outputs)
                        ))
                    })
            })
            .collect(),
    }
}

/// Builds the JSON response, serialising straight from the output bytes.
pub fn respond<'a>(
    config: &ModelConfig,
    model_name: &str,
    version: u64,
    id: Option<String>,
    selected: &[usize],
    outputs: &'a [TensorData],
) -> InferResponse<RawData<'a>> {
    InferResponse {
        model_name: model_name.to_string(),
        model_version: Some(version.to_string()),
        id,
        parameters: None,
        outputs: selected
            .iter()
            .map(|&i| ResponseOutput {
                name: config.outputs[i].name.clone(),
                shape: outputs[i].shape.clone(),
                datatype: outputs[i].datatype.to_string(),
                parameters: None,
                data: Some(RawData {
                    datatype: outputs[i].datatype,
                    bytes: &outputs[i].bytes,
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{RequestInput, RequestOutput};
    use serde_json::json;

    fn config() -> ModelConfig {
        ModelConfig::parse(
            "max_batch_size = 4\n[[inputs]]\nname='a'\ndatatype='FP32'\nshape=[-1,2]\n\
             [[inputs]]\nname='b'\ndatatype='INT64'\nshape=[-1]\n\
             [[outputs]]\nname='y'\ndatatype='FP32'\nshape=[-1,3]\n[[outputs]]\nname='z'\ndatatype='FP32'\nshape=[-1]\n",
        )
        .unwrap()
    }

    fn input(name: &str, dt: &str, shape: Vec<u64>, data: serde_json::Value) -> RequestInput {
        RequestInput {
            name: name.into(),
            shape,
            datatype: dt.into(),
            parameters: None,
            data: Some(data),
        }
    }

    fn request(inputs: Vec<RequestInput>) -> InferRequest {
        InferRequest {
            inputs,
            ..Default::default()
        }
    }

    fn err(r: InferRequest) -> String {
        prepare(&config(), &r).unwrap_err().to_string()
    }

    #[test]
    fn a_good_request_is_ordered_as_the_model_declares() {
        let r = request(vec![
            input("b", "INT64", vec![2], json!([7, 8])),
            input("a", "FP32", vec![2, 2], json!([[1, 2], [3, 4]])),
        ]);
        let p = prepare(&config(), &r).unwrap();
        assert_eq!(p.inputs[0].shape, vec![2, 2]);
        assert_eq!(p.inputs[0].bytes.len(), 16);
        assert_eq!(
            p.inputs[1].bytes,
            [7i64.to_le_bytes(), 8i64.to_le_bytes()].concat()
        );
        assert_eq!(p.outputs, vec![0, 1]);
    }

    #[test]
    fn every_mistake_is_named() {
        let a = || input("a", "FP32", vec![1, 2], json!([1, 2]));
        let b = || input("b", "INT64", vec![1], json!([1]));
        let cases = [
            (request(vec![a()]), "missing input 'b'"),
            (
                request(vec![a(), b(), input("c", "FP32", vec![1], json!([1]))]),
                "unknown input 'c'; the model's inputs are: a, b",
            ),
            (request(vec![a(), a(), b()]), "given twice"),
            (
                request(vec![input("a", "FP64", vec![1, 2], json!([1, 2])), b()]),
                "datatype FP64 does not match the model's FP32",
            ),
            (
                request(vec![input("a", "FLOAT", vec![1, 2], json!([1, 2])), b()]),
                "unknown datatype 'FLOAT'",
            ),
            (
                request(vec![input("a", "FP32", vec![1, 3], json!([1, 2, 3])), b()]),
                "dimension 1 is 3, the model expects 2",
            ),
            (
                request(vec![input("a", "FP32", vec![2], json!([1, 2])), b()]),
                "has 1 dimensions, the model expects 2",
            ),
            (
                request(vec![
                    input(
                        "a",
                        "FP32",
                        vec![5, 2],
                        json!([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                    ),
                    b(),
                ]),
                "batch of 5 rows; this model takes 1 to 4",
            ),
            (
                request(vec![input("a", "FP32", vec![0, 2], json!([])), b()]),
                "batch of 0 rows",
            ),
            (
                request(vec![input("a", "FP32", vec![1, 2], json!([1])), b()]),
                "expected 2 elements (from shape), got 1",
            ),
            (
                request(vec![a(), input("b", "INT64", vec![1], json!([1.5]))]),
                "element 0 (1.5) is not a valid INT64",
            ),
            (
                request(vec![
                    input("a", "FP32", vec![2, 2], json!([0, 0, 0, 0])),
                    b(),
                ]),
                "disagree on the batch size",
            ),
        ];
        for (r, want) in cases {
            let e = err(r);
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn huge_shapes_are_refused_before_any_allocation() {
        let cfg = ModelConfig::parse(
            "[[inputs]]\nname='a'\ndatatype='FP32'\nshape=[-1,-1]\n[[outputs]]\nname='y'\ndatatype='FP32'\nshape=[-1]\n",
        )
        .unwrap();
        let r = request(vec![input(
            "a",
            "FP32",
            vec![4294967296, 4294967296],
            json!([1]),
        )]);
        let e = prepare(&cfg, &r).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let r = request(vec![input("a", "FP32", vec![1 << 20, 1 << 20], json!([1]))]);
        let e = prepare(&cfg, &r).unwrap_err();
        assert!(
            e.to_string().contains("expected 1099511627776 elements"),
            "{e}"
        );
    }

    #[test]
    fn requested_outputs_are_filtered_and_checked() {
        let mut r = request(vec![
            input("a", "FP32", vec![1, 2], json!([1, 2])),
            input("b", "INT64", vec![1], json!([1])),
        ]);
        r.outputs = Some(vec![RequestOutput {
            name: "z".into(),
            parameters: None,
        }]);
        assert_eq!(prepare(&config(), &r).unwrap().outputs, vec![1]);
        r.outputs = Some(vec![RequestOutput {
            name: "nope".into(),
            parameters: None,
        }]);
        assert!(err(r).contains("unknown output 'nope'; the model's outputs are: y, z"));
    }
}
