//! Infer requests: decoded from any framing against a model's signature (server side), and
//! encoded from tensors (client side).

use std::time::Duration;

use bytes::Bytes;

use super::{check_shape, names, param_bool, param_u64, params, CodecError};
use crate::wire::{
    BINARY_DATA, BINARY_DATA_OUTPUT, BINARY_DATA_SIZE, CLASSIFICATION, HEADER_LENGTH, PRIORITY,
    TIMEOUT,
};
use crate::{
    json_to_bytes, Datatype, InferRequest, RawData, RequestInput, Signature, Tensor, TensorSpec,
};

/// One output the client asked for: its index among the model's outputs, whether it goes back
/// as binary data rather than JSON, and how many classes (the classification extension; 0: the
/// tensor itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputChoice {
    pub index: usize,
    pub binary: bool,
    pub classes: usize,
}

/// One output asked for by name, with its `classification` count (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted<'a> {
    name: &'a str,
    binary: bool,
    classes: u64,
}

/// A decoded, checked infer request.
#[derive(Debug)]
pub struct Decoded {
    pub id: Option<String>,
    /// The inputs in the model's declared order.
    pub inputs: Vec<Tensor>,
    /// The outputs to return, in the order the client asked for them.
    pub outputs: Vec<OutputChoice>,
    /// The client's own timeout (the `timeout` parameter, microseconds on the wire).
    pub timeout: Option<Duration>,
    /// The `priority` parameter as sent; the model's batching config says what it means.
    pub priority: Option<u64>,
}

/// Reads the binary extension's header value: `None` when the header is absent.
pub fn header_length(value: Option<&[u8]>) -> Result<Option<usize>, CodecError> {
    let Some(v) = value else { return Ok(None) };
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            let shown = String::from_utf8_lossy(v);
            CodecError::Invalid(format!(
                "{HEADER_LENGTH} must be a byte count, got {shown:?}"
            ))
        })
}

/// Decodes a request body: JSON when `header_length` is `None`, a JSON header of that many bytes
/// followed by binary tensor data, or (`Some(0)`) the raw bytes of a single-input model's input.
pub fn decode_request(
    sig: &Signature,
    header_length: Option<usize>,
    body: Bytes,
) -> Result<Decoded, CodecError> {
    let parse = |json: &[u8]| {
        serde_json::from_slice::<InferRequest>(json)
            .map_err(|e| CodecError::Malformed(e.to_string()))
    };
    match header_length {
        None => decode_json(sig, parse(&body)?, &body.slice(..0)),
        Some(0) => decode_raw(sig, body),
        Some(n) if n <= body.len() => decode_json(sig, parse(&body[..n])?, &body.slice(n..)),
        Some(n) => Err(CodecError::Invalid(format!(
            "{HEADER_LENGTH} is {n} but the body has only {} bytes",
            body.len()
        ))),
    }
}

fn decode_json(
    sig: &Signature,
    request: InferRequest,
    binary: &Bytes,
) -> Result<Decoded, CodecError> {
    let mut offset = 0usize;
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    for input in &request.inputs {
        let index = free_slot(sig, &slots, &input.name)?;
        slots[index] = Some(decode_input(
            sig,
            &sig.inputs[index],
            input,
            binary,
            &mut offset,
        )?);
    }
    if offset != binary.len() {
        return Err(CodecError::Invalid(format!(
            "the body has {} bytes of binary data after the JSON header, the inputs declare {offset}",
            binary.len()
        )));
    }
    let params = request.parameters.as_ref();
    Ok(Decoded {
        inputs: finish_inputs(sig, slots)?,
        outputs: select_outputs(sig, &request)?,
        timeout: param_u64(params, TIMEOUT)?.map(Duration::from_micros),
        priority: param_u64(params, PRIORITY)?,
        id: request.id,
    })
}

/// The index of the model's input or output (`what`) called `name`.
fn position(specs: &[TensorSpec], name: &str, what: &str) -> Result<usize, CodecError> {
    specs.iter().position(|s| s.name == name).ok_or_else(|| {
        CodecError::Invalid(format!(
            "unknown {what} '{name}'; the model's {what}s are: {}",
            names(specs)
        ))
    })
}

/// The index of the model's input `name`, which must not have been given already.
fn free_slot(sig: &Signature, slots: &[Option<Tensor>], name: &str) -> Result<usize, CodecError> {
    let index = position(sig.inputs, name, "input")?;
    if slots[index].is_some() {
        return Err(CodecError::Invalid(format!("input '{name}' given twice")));
    }
    Ok(index)
}

/// The input's datatype, which must be the model's.
fn checked_datatype(spec: &TensorSpec, name: &str, datatype: &str) -> Result<Datatype, CodecError> {
    let parsed = Datatype::parse(datatype).ok_or_else(|| {
        CodecError::Invalid(format!("input '{name}': unknown datatype '{datatype}'"))
    })?;
    if parsed != spec.datatype {
        return Err(CodecError::Invalid(format!(
            "input '{name}': datatype {parsed} does not match the model's {}",
            spec.datatype
        )));
    }
    Ok(parsed)
}

/// One input as a binary framing (gRPC) carries it: element bytes, little-endian, row-major,
/// either as sent (`raw_input_contents`) or converted from typed contents.
#[derive(Debug)]
pub struct BinaryInput<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: Vec<u64>,
    pub bytes: Bytes,
}

/// What a binary framing says besides its inputs.
#[derive(Debug, Default)]
pub struct BinaryRequest<'a> {
    pub id: Option<String>,
    /// The outputs asked for by name, each with its `classification` count; empty: all of them.
    pub outputs: Vec<(&'a str, u64)>,
    pub timeout: Option<Duration>,
    pub priority: Option<u64>,
}

/// Decodes inputs that arrive as bytes with the same checks and messages as the JSON framings;
/// every output goes back binary.
pub fn decode_binary(
    sig: &Signature,
    inputs: Vec<BinaryInput>,
    request: BinaryRequest,
) -> Result<Decoded, CodecError> {
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    for input in inputs {
        let index = free_slot(sig, &slots, input.name)?;
        let spec = &sig.inputs[index];
        let datatype = checked_datatype(spec, input.name, input.datatype)?;
        let count = check_shape(sig, spec, &input.shape)?;
        let want = count * datatype.size().unwrap_or(0); // check_shape proved no overflow
        if input.bytes.len() != want {
            return Err(CodecError::Invalid(format!(
                "input '{}': {} bytes of data, shape {:?} of {datatype} needs {want}",
                input.name,
                input.bytes.len(),
                input.shape
            )));
        }
        slots[index] = Some(Tensor {
            datatype,
            shape: input.shape,
            bytes: input.bytes,
        });
    }
    let wanted: Vec<Wanted> = request
        .outputs
        .iter()
        .map(|&(name, classes)| Wanted {
            name,
            binary: true,
            classes,
        })
        .collect();
    Ok(Decoded {
        inputs: finish_inputs(sig, slots)?,
        outputs: outputs_by_name(sig, &wanted, true)?,
        timeout: request.timeout,
        priority: request.priority,
        id: request.id,
    })
}

/// One input: its datatype and shape checked, its bytes from `data` or from the binary part
/// (`binary[*offset..]`, advancing `offset`).
fn decode_input(
    sig: &Signature,
    spec: &TensorSpec,
    input: &RequestInput,
    binary: &Bytes,
    offset: &mut usize,
) -> Result<Tensor, CodecError> {
    let name = &input.name;
    let datatype = checked_datatype(spec, name, &input.datatype)?;
    let count = check_shape(sig, spec, &input.shape)?;
    let bytes = match param_u64(input.parameters.as_ref(), BINARY_DATA_SIZE)? {
        Some(size) => {
            let want = count * datatype.size().unwrap_or(0); // check_shape proved no overflow
            if size != want as u64 {
                return Err(CodecError::Invalid(format!(
                    "input '{name}': {BINARY_DATA_SIZE} is {size} bytes, shape {:?} of {datatype} needs {want}",
                    input.shape
                )));
            }
            let end = offset.checked_add(want).filter(|&e| e <= binary.len()).ok_or_else(|| {
                CodecError::Invalid(format!(
                    "input '{name}': the body holds {} bytes of binary data after the JSON header, fewer than the inputs declare",
                    binary.len()
                ))
            })?;
            let bytes = binary.slice(*offset..end);
            *offset = end;
            bytes
        }
        None => {
            let data = input.data.as_ref().ok_or_else(|| {
                CodecError::Invalid(format!(
                    "input '{name}' has neither 'data' nor a '{BINARY_DATA_SIZE}' parameter"
                ))
            })?;
            let mut bytes = Vec::new();
            json_to_bytes(data, datatype, &input.shape, &mut bytes)
                .map_err(|e| CodecError::Invalid(format!("input '{name}': {e}")))?;
            Bytes::from(bytes)
        }
    };
    Ok(Tensor {
        datatype,
        shape: input.shape.clone(),
        bytes,
    })
}

/// Every declared input must be present, and batched inputs must agree on the row count.
fn finish_inputs(sig: &Signature, slots: Vec<Option<Tensor>>) -> Result<Vec<Tensor>, CodecError> {
    let inputs = slots
        .into_iter()
        .zip(sig.inputs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| CodecError::Invalid(format!("missing input '{}'", spec.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sig.batched() {
        let rows = inputs[0].shape[0];
        if let Some(other) = inputs.iter().find(|t| t.shape[0] != rows) {
            return Err(CodecError::Invalid(format!(
                "inputs disagree on the batch size ({rows} and {})",
                other.shape[0]
            )));
        }
    }
    Ok(inputs)
}

fn select_outputs(
    sig: &Signature,
    request: &InferRequest,
) -> Result<Vec<OutputChoice>, CodecError> {
    let all_binary = param_bool(request.parameters.as_ref(), BINARY_DATA_OUTPUT).unwrap_or(false);
    let wanted: Vec<Wanted> = request
        .outputs
        .iter()
        .flatten()
        .map(|o| {
            let params = o.parameters.as_ref();
            Ok(Wanted {
                name: o.name.as_str(),
                binary: param_bool(params, BINARY_DATA).unwrap_or(all_binary),
                classes: param_u64(params, CLASSIFICATION)?.unwrap_or(0),
            })
        })
        .collect::<Result<_, CodecError>>()?;
    outputs_by_name(sig, &wanted, all_binary)
}

/// The outputs asked for, by name, each with whether it goes back binary and its class count;
/// none asked for: every output, binary when `all_binary`.
fn outputs_by_name(
    sig: &Signature,
    wanted: &[Wanted],
    all_binary: bool,
) -> Result<Vec<OutputChoice>, CodecError> {
    if wanted.is_empty() {
        return Ok(every_output(sig, all_binary));
    }
    wanted
        .iter()
        .map(|w| {
            let index = position(sig.outputs, w.name, "output")?;
            let spec = &sig.outputs[index];
            if w.classes > 0 && !super::classify::classifiable(spec.datatype) {
                return Err(super::classify::refused(w.name, spec.datatype));
            }
            Ok(OutputChoice {
                index,
                binary: w.binary,
                // More classes than a row has elements is every element, as in Triton.
                classes: usize::try_from(w.classes).unwrap_or(usize::MAX),
            })
        })
        .collect()
}

fn every_output(sig: &Signature, binary: bool) -> Vec<OutputChoice> {
    (0..sig.outputs.len())
        .map(|index| OutputChoice {
            index,
            binary,
            classes: 0,
        })
        .collect()
}

/// `Inference-Header-Content-Length: 0`: the whole body is the raw bytes of the single input of a
/// single-input model, one row; every output goes back binary.
fn decode_raw(sig: &Signature, body: Bytes) -> Result<Decoded, CodecError> {
    let [spec] = sig.inputs else {
        return Err(CodecError::Invalid(format!(
            "a raw binary request ({HEADER_LENGTH}: 0) needs a single-input model; this one has {} inputs",
            sig.inputs.len()
        )));
    };
    let mut shape = Vec::with_capacity(spec.shape.len());
    for (i, &d) in spec.shape.iter().enumerate() {
        match d {
            -1 if i == 0 && sig.batched() => shape.push(1),
            d if d >= 0 => shape.push(d as u64),
            _ => {
                return Err(CodecError::Invalid(format!(
                    "a raw binary request cannot say the size of dimension {i} of input '{}' ({:?}): send a JSON header",
                    spec.name, spec.shape
                )))
            }
        }
    }
    let count = check_shape(sig, spec, &shape)?;
    let want = count * spec.datatype.size().unwrap_or(0);
    if body.len() != want {
        return Err(CodecError::Invalid(format!(
            "input '{}': {BINARY_DATA_SIZE} is {} bytes, shape {shape:?} of {} needs {want}",
            spec.name,
            body.len(),
            spec.datatype
        )));
    }
    let tensor = Tensor {
        datatype: spec.datatype,
        shape,
        bytes: body,
    };
    Ok(Decoded {
        id: None,
        inputs: vec![tensor],
        outputs: every_output(sig, true),
        timeout: None,
        priority: None,
    })
}

/// Encodes a request (client side): every input as JSON `data`, or (`binary`) every input as
/// binary data after the JSON header, with every output asked for as binary too.
pub fn encode_request(
    inputs: &[(&str, &Tensor)],
    binary: bool,
) -> Result<super::Encoded, CodecError> {
    let mut blobs = Vec::new();
    let inputs = inputs
        .iter()
        .map(|&(name, t)| {
            let (parameters, data) = if binary {
                blobs.push(&t.bytes[..]);
                (Some(params(BINARY_DATA_SIZE, t.bytes.len())), None)
            } else {
                (
                    None,
                    Some(RawData {
                        datatype: t.datatype,
                        bytes: &t.bytes,
                    }),
                )
            };
            RequestInput {
                name: name.to_string(),
                shape: t.shape.clone(),
                datatype: t.datatype.to_string(),
                parameters,
                data,
            }
        })
        .collect();
    let request = InferRequest {
        id: None,
        parameters: binary.then(|| params(BINARY_DATA_OUTPUT, true)),
        inputs,
        outputs: None,
    };
    super::Encoded::new(&request, &blobs)
}
