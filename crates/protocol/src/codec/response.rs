//! Infer responses: encoded from the runtime's output tensors (server side), JSON outputs
//! serialised straight from their bytes; and decoded back into tensors (client side).

use std::borrow::Cow;

use bytes::Bytes;

use super::classify::classify;
use super::{param_u64, params, CodecError, Encoded, OutputChoice};
use crate::wire::{BINARY_DATA_SIZE, HEADER_LENGTH};
use crate::{
    element_count, json_to_bytes, Datatype, InferResponse, RawData, ResponseOutput, Signature,
    Tensor,
};

/// The outputs `selected` picked, in the client's order, each with its declared name; classified
/// where the client asked for classes (so HTTP and gRPC answer the same).
pub fn chosen_outputs<'a, 't>(
    sig: &Signature<'a>,
    selected: &[OutputChoice],
    outputs: &'t [Tensor],
) -> Result<Vec<(&'a str, Cow<'t, Tensor>)>, CodecError> {
    selected
        .iter()
        .map(|choice| {
            let (Some(out), Some(spec)) =
                (outputs.get(choice.index), sig.outputs.get(choice.index))
            else {
                return Err(CodecError::Encode(format!(
                    "output {} asked for, but the model gave {} of {} declared",
                    choice.index,
                    outputs.len(),
                    sig.outputs.len()
                )));
            };
            let tensor = match choice.classes {
                0 => Cow::Borrowed(out),
                k => Cow::Owned(classify(spec, sig.batched(), k, out)?),
            };
            Ok((spec.name.as_str(), tensor))
        })
        .collect()
}

/// Encodes the response to a request: the outputs `selected` picked, binary ones carrying
/// `binary_data_size` instead of `data`, their bytes following the JSON header in order.
pub fn encode_response(
    sig: &Signature,
    model: &str,
    version: u64,
    id: Option<String>,
    selected: &[OutputChoice],
    outputs: &[Tensor],
) -> Result<Encoded, CodecError> {
    let chosen = chosen_outputs(sig, selected, outputs)?;
    let mut blobs = Vec::new();
    let mut listed = Vec::with_capacity(selected.len());
    for (choice, (name, out)) in selected.iter().zip(&chosen) {
        let (parameters, data) = if choice.binary {
            blobs.push(&out.bytes[..]);
            (Some(params(BINARY_DATA_SIZE, out.bytes.len())), None)
        } else {
            (
                None,
                Some(RawData {
                    datatype: out.datatype,
                    bytes: &out.bytes,
                }),
            )
        };
        listed.push(ResponseOutput {
            name: name.to_string(),
            shape: out.shape.clone(),
            datatype: out.datatype.to_string(),
            parameters,
            data,
        });
    }
    let header = InferResponse {
        model_name: model.to_string(),
        model_version: Some(version.to_string()),
        id,
        parameters: None,
        outputs: listed,
    };
    Encoded::new(&header, &blobs)
}

/// A decoded response (client side): outputs as tensors, in the order the server sent them.
#[derive(Debug)]
pub struct DecodedResponse {
    pub model_name: String,
    pub model_version: Option<String>,
    pub id: Option<String>,
    pub outputs: Vec<(String, Tensor)>,
}

/// Decodes a response body; `header_length` is the response's `inference-header-content-length`.
pub fn decode_response(
    header_length: Option<usize>,
    body: &[u8],
) -> Result<DecodedResponse, CodecError> {
    let split = header_length.unwrap_or(body.len());
    if split > body.len() {
        return Err(CodecError::Invalid(format!(
            "{HEADER_LENGTH} is {split} but the body has only {} bytes",
            body.len()
        )));
    }
    let header: InferResponse =
        serde_json::from_slice(&body[..split]).map_err(|e| CodecError::Malformed(e.to_string()))?;
    let binary = Bytes::copy_from_slice(&body[split..]);
    let mut offset = 0usize;
    let mut outputs = Vec::with_capacity(header.outputs.len());
    for out in header.outputs {
        let tensor = decode_output(&out, &binary, &mut offset)?;
        outputs.push((out.name, tensor));
    }
    if offset != binary.len() {
        return Err(CodecError::Invalid(format!(
            "the response has {} bytes of binary data, its outputs declare {offset}",
            binary.len()
        )));
    }
    Ok(DecodedResponse {
        model_name: header.model_name,
        model_version: header.model_version,
        id: header.id,
        outputs,
    })
}

fn decode_output(
    out: &ResponseOutput,
    binary: &Bytes,
    offset: &mut usize,
) -> Result<Tensor, CodecError> {
    let invalid = |why: String| CodecError::Invalid(format!("output '{}': {why}", out.name));
    let datatype = Datatype::parse(&out.datatype)
        .ok_or_else(|| invalid(format!("unknown datatype '{}'", out.datatype)))?;
    let count = element_count(&out.shape)
        .ok_or_else(|| invalid(format!("shape {:?} is too large", out.shape)))?;
    let bytes = match param_u64(out.parameters.as_ref(), BINARY_DATA_SIZE)? {
        Some(size) => {
            let end = usize::try_from(size)
                .ok()
                .and_then(|s| offset.checked_add(s))
                .filter(|&e| e <= binary.len())
                .ok_or_else(|| invalid(format!("{BINARY_DATA_SIZE} {size} runs past the body")))?;
            let bytes = binary.slice(*offset..end);
            *offset = end;
            bytes
        }
        None => {
            let data = out.data.as_ref().ok_or_else(|| invalid("no data".into()))?;
            let mut bytes = Vec::new(); // json_to_bytes reserves once the count is checked
            json_to_bytes(data, datatype, &out.shape, &mut bytes)
                .map_err(|e| invalid(e.to_string()))?;
            Bytes::from(bytes)
        }
    };
    if datatype
        .size()
        .is_some_and(|s| Some(bytes.len()) != count.checked_mul(s))
    {
        return Err(invalid(format!(
            "{} bytes do not hold shape {:?} of {datatype}",
            bytes.len(),
            out.shape
        )));
    }
    Ok(Tensor {
        datatype,
        shape: out.shape.clone(),
        bytes,
    })
}
