//! From a v2 request to runtime tensors and back: every check that can be made before a tensor exists
//! (names, datatypes, shapes, batch size, element and byte counts with overflow-safe arithmetic) is made
//! here, so a bad request never reaches libtorch.

use bytes::Bytes;
use protocol::{
    element_count, json_to_bytes, Datatype, InferRequest, InferResponse, Parameters, RawData,
    ResponseOutput,
};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::repository::{ModelConfig, TensorSpec};
use crate::runtime::TensorData;

/// A checked request: inputs in the model's declared order, and which outputs to return.
#[derive(Debug)]
pub struct Prepared {
    pub inputs: Vec<TensorData>,
    /// Indices into the model's outputs, in the order the client asked for them, each with whether
    /// it goes back as binary data (the binary tensor extension) rather than JSON.
    pub outputs: Vec<(usize, bool)>,
}

/// A boolean request/output parameter (`binary_data_output`, `binary_data`).
pub fn param_bool(params: Option<&Parameters>, key: &str) -> Option<bool> {
    params.and_then(|p| p.get(key)).and_then(Value::as_bool)
}

/// An unsigned integer parameter (`binary_data_size`, `timeout`, `priority`).
pub fn param_u64(params: Option<&Parameters>, key: &str) -> Result<Option<u64>, ApiError> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "parameter '{key}' must be a non-negative integer, got {v}"
            ))
        }),
    }
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

/// Validates an infer request against the model config and converts its data: JSON `data`, or for
/// inputs with a `binary_data_size` parameter, the next bytes of `binary` (the body after the JSON
/// header), in the order the inputs appear.
pub fn prepare(
    config: &ModelConfig,
    request: &InferRequest,
    binary: &Bytes,
) -> Result<Prepared, ApiError> {
    let mut offset = 0usize;
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
        let bytes = match param_u64(input.parameters.as_ref(), "binary_data_size")? {
            Some(size) => {
                let want = count * datatype.size().unwrap_or(0); // check_shape proved no overflow
                if size != want as u64 {
                    return Err(ApiError::InvalidInput(format!(
                        "input '{}': binary_data_size is {size} bytes, shape {:?} of {datatype} needs {want}",
                        input.name, input.shape
                    )));
                }
                let end = offset
                    .checked_add(want)
                    .filter(|&e| e <= binary.len())
                    .ok_or_else(|| {
                        ApiError::InvalidInput(format!(
                            "input '{}': the body holds {} bytes of binary data after the JSON header, fewer than the inputs declare",
                            input.name,
                            binary.len()
                        ))
                    })?;
                let bytes = binary.slice(offset..end);
                offset = end;
                bytes
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| {
                    ApiError::InvalidInput(format!(
                        "input '{}' has neither 'data' nor a 'binary_data_size' parameter",
                        input.name
                    ))
                })?;
                let mut bytes = Vec::new();
                json_to_bytes(data, datatype, count, &mut bytes)
                    .map_err(|e| ApiError::InvalidInput(format!("input '{}': {e}", input.name)))?;
                Bytes::from(bytes)
            }
        };
        slots[index] = Some(TensorData {
            datatype,
            shape: input.shape.clone(),
            bytes,
        });
    }
    if offset != binary.len() {
        return Err(ApiError::InvalidInput(format!(
            "the body has {} bytes of binary data after the JSON header, the inputs declare {offset}",
            binary.len()
        )));
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

fn select_outputs(
    config: &ModelConfig,
    request: &InferRequest,
) -> Result<Vec<(usize, bool)>, ApiError> {
    let all_binary = param_bool(request.parameters.as_ref(), "binary_data_output").unwrap_or(false);
    match &request.outputs {
        Some(wanted) if !wanted.is_empty() => wanted
            .iter()
            .map(|o| {
                let index = config
                    .outputs
                    .iter()
                    .position(|s| s.name == o.name)
                    .ok_or_else(|| {
                        ApiError::InvalidInput(format!(
                            "unknown output '{}'; the model's outputs are: {}",
                            o.name,
                            names(&config.outputs)
                        ))
                    })?;
                let binary = param_bool(o.parameters.as_ref(), "binary_data").unwrap_or(all_binary);
                Ok((index, binary))
            })
            .collect(),
        _ => Ok((0..config.outputs.len()).map(|i| (i, all_binary)).collect()),
    }
}

/// Builds the response header, serialising JSON outputs straight from their bytes; binary outputs
/// carry `binary_data_size` instead of `data`, and their bytes are returned (in order) to follow it.
pub fn respond<'a>(
    config: &ModelConfig,
    model_name: &str,
    version: u64,
    id: Option<String>,
    selected: &[(usize, bool)],
    outputs: &'a [TensorData],
) -> (InferResponse<RawData<'a>>, Vec<&'a [u8]>) {
    let mut blobs = Vec::new();
    let outputs = selected
        .iter()
        .map(|&(i, binary)| {
            let out = &outputs[i];
            let (parameters, data) = if binary {
                blobs.push(&out.bytes[..]);
                let p = json!({ "binary_data_size": out.bytes.len() });
                (p.as_object().cloned(), None)
            } else {
                (
                    None,
                    Some(RawData {
                        datatype: out.datatype,
                        bytes: &out.bytes,
                    }),
                )
            };
            ResponseOutput {
                name: config.outputs[i].name.clone(),
                shape: out.shape.clone(),
                datatype: out.datatype.to_string(),
                parameters,
                data,
            }
        })
        .collect();
    let header = InferResponse {
        model_name: model_name.to_string(),
        model_version: Some(version.to_string()),
        id,
        parameters: None,
        outputs,
    };
    (header, blobs)
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
        prepare(&config(), &r, &Bytes::new())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_good_request_is_ordered_as_the_model_declares() {
        let r = request(vec![
            input("b", "INT64", vec![2], json!([7, 8])),
            input("a", "FP32", vec![2, 2], json!([[1, 2], [3, 4]])),
        ]);
        let p = prepare(&config(), &r, &Bytes::new()).unwrap();
        assert_eq!(p.inputs[0].shape, vec![2, 2]);
        assert_eq!(p.inputs[0].bytes.len(), 16);
        assert_eq!(
            p.inputs[1].bytes,
            [7i64.to_le_bytes(), 8i64.to_le_bytes()].concat()
        );
        assert_eq!(p.outputs, vec![(0, false), (1, false)]);
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
        let e = prepare(&cfg, &r, &Bytes::new()).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let r = request(vec![input("a", "FP32", vec![1 << 20, 1 << 20], json!([1]))]);
        let e = prepare(&cfg, &r, &Bytes::new()).unwrap_err();
        assert!(
            e.to_string().contains("expected 1099511627776 elements"),
            "{e}"
        );
    }

    #[test]
    fn binary_inputs_take_their_bytes_in_order_and_must_add_up() {
        let bin = |name: &str, dt: &str, shape: Vec<u64>, size: u64| RequestInput {
            name: name.into(),
            shape,
            datatype: dt.into(),
            parameters: json!({"binary_data_size": size}).as_object().cloned(),
            data: None,
        };
        let a: Vec<u8> = [1f32, 2.].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = 9i64.to_le_bytes().to_vec();
        let body = Bytes::from([a.clone(), b.clone()].concat());
        let r = request(vec![
            bin("a", "FP32", vec![1, 2], 8),
            bin("b", "INT64", vec![1], 8),
        ]);
        let p = prepare(&config(), &r, &body).unwrap();
        assert_eq!(
            (p.inputs[0].bytes.to_vec(), p.inputs[1].bytes.to_vec()),
            (a, b)
        );

        let short = prepare(&config(), &r, &body.slice(..12))
            .unwrap_err()
            .to_string();
        assert!(short.contains("fewer than the inputs declare"), "{short}");
        let long = prepare(&config(), &r, &Bytes::from([&body[..], &[0]].concat()))
            .unwrap_err()
            .to_string();
        assert!(long.contains("17 bytes of binary data"), "{long}");
        let r = request(vec![
            bin("a", "FP32", vec![1, 2], 7),
            bin("b", "INT64", vec![1], 8),
        ]);
        let wrong = prepare(&config(), &r, &body).unwrap_err().to_string();
        assert!(wrong.contains("binary_data_size is 7 bytes"), "{wrong}");
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
        assert_eq!(
            prepare(&config(), &r, &Bytes::new()).unwrap().outputs,
            vec![(1, false)]
        );
        r.parameters = json!({"binary_data_output": true}).as_object().cloned();
        assert_eq!(
            prepare(&config(), &r, &Bytes::new()).unwrap().outputs,
            vec![(1, true)]
        );
        r.outputs = Some(vec![RequestOutput {
            name: "y".into(),
            parameters: json!({"binary_data": false}).as_object().cloned(),
        }]);
        assert_eq!(
            prepare(&config(), &r, &Bytes::new()).unwrap().outputs,
            vec![(0, false)]
        );
        r.outputs = Some(vec![RequestOutput {
            name: "nope".into(),
            parameters: None,
        }]);
        assert!(err(r).contains("unknown output 'nope'; the model's outputs are: y, z"));
    }
}
