//! gRPC as bytes, for clients that drive HTTP/2 themselves (the load tester): the length-prefixed
//! message framing, the infer request built from tensors, and the answer's metadata.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use protocol::{ModelMetadata, Tensor, TensorMetadata};

use crate::pb;

/// The request path of a method of the inference service.
pub fn path(method: &str) -> String {
    format!("/{}/{method}", crate::SERVICE)
}

/// One message as gRPC sends it: not compressed (0), its length (big-endian u32), the message.
pub fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    message.encode(&mut out).expect("BytesMut grows as needed");
    out.freeze()
}

/// The one message of a unary answer's body.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err(format!(
            "a gRPC body of {} bytes has no message header",
            body.len()
        ));
    };
    if *flag != 0 {
        return Err("the answer is compressed; this client asked for none".into());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    rest.get(..len).ok_or_else(|| {
        format!(
            "the message header says {len} bytes, the body holds {}",
            rest.len()
        )
    })
}

/// A ModelInferRequest carrying `inputs` as raw contents (as tritonclient sends them).
pub fn infer_request(model: &str, inputs: &[(&str, &Tensor)]) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.to_string(),
        inputs: inputs
            .iter()
            .map(|(name, t)| pb::model_infer_request::InferInputTensor {
                name: name.to_string(),
                datatype: t.datatype.as_str().to_string(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|(_, t)| t.bytes.clone()).collect(),
        ..Default::default()
    }
}

/// A ModelMetadata answer as the protocol crate's type (what HTTP's `GET /v2/models/{m}` gives).
pub fn metadata(m: pb::ModelMetadataResponse) -> ModelMetadata {
    let tensors = |list: Vec<pb::model_metadata_response::TensorMetadata>| {
        list.into_iter()
            .map(|t| TensorMetadata {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape,
            })
            .collect()
    };
    ModelMetadata {
        name: m.name,
        versions: m.versions,
        platform: m.platform,
        inputs: tensors(m.inputs),
        outputs: tensors(m.outputs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_short_bodies_are_named() {
        let m = pb::ModelInferResponse {
            id: "x".into(),
            ..Default::default()
        };
        let framed = frame(&m);
        assert_eq!(framed[0], 0);
        let inner = unframe(&framed).unwrap();
        assert_eq!(pb::ModelInferResponse::decode(inner).unwrap().id, "x");
        assert!(unframe(&framed[..framed.len() - 1])
            .unwrap_err()
            .contains("says"));
        assert!(unframe(&[0, 0]).unwrap_err().contains("no message header"));
        assert_eq!(
            path("ModelInfer"),
            "/inference.GRPCInferenceService/ModelInfer"
        );
    }
}
