//! Request bodies generated from the model's v2 metadata: one row of random data of the right shape
//! and datatype (seeded, so runs are repeatable), encoded as the chosen API expects.

use protocol::{codec, CodecError, Datatype, ModelMetadata, Tensor};
use serde_json::{json, Value};

use crate::cli::Api;
use crate::LoadError;

/// A ready-to-send request: body and the extra header the binary extension needs.
#[derive(Clone, Debug)]
pub struct Payload {
    pub path: String,
    pub body: bytes::Bytes,
    pub header_length: Option<usize>,
    pub content_type: &'static str,
}

/// xorshift64*: small, seeded, good enough for test data and Poisson gaps.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn element(dt: Datatype, rng: &mut Rng) -> Value {
    match dt {
        Datatype::Bool => json!(rng.next_u64() % 2 == 1),
        Datatype::Fp16 | Datatype::Bf16 | Datatype::Fp32 | Datatype::Fp64 => {
            json!((rng.unit() * 1000.0).round() / 1000.0)
        }
        _ => json!(rng.next_u64() % 10),
    }
}

/// One row of seeded random data for each input of the model (batch dimension 1).
fn inputs(meta: &ModelMetadata, rng: &mut Rng) -> Result<Vec<(String, Tensor)>, LoadError> {
    let mut inputs = Vec::new();
    for t in &meta.inputs {
        let dt = Datatype::parse(&t.datatype).ok_or_else(|| {
            LoadError::Payload(format!(
                "input '{}' has datatype {} this tool cannot generate",
                t.name, t.datatype
            ))
        })?;
        let shape: Vec<u64> = t
            .shape
            .iter()
            .map(|&d| if d < 0 { 1 } else { d as u64 })
            .collect();
        let n = protocol::element_count(&shape)
            .ok_or_else(|| LoadError::Payload(format!("input '{}' is too large", t.name)))?;
        let data = Value::Array((0..n).map(|_| element(dt, rng)).collect());
        let mut bytes = Vec::new();
        protocol::json_to_bytes(&data, dt, &[n as u64], &mut bytes)
            .map_err(|e| LoadError::Payload(format!("input '{}': {e}", t.name)))?;
        let tensor = Tensor {
            datatype: dt,
            shape,
            bytes: bytes.into(),
        };
        inputs.push((t.name.clone(), tensor));
    }
    Ok(inputs)
}

/// Builds the payload for `api` from the model's metadata, through the same codec the server
/// decodes with.
pub fn build(meta: &ModelMetadata, api: Api, rng: &mut Rng) -> Result<Payload, LoadError> {
    let inputs = inputs(meta, rng)?;
    let model = &meta.name;
    let codec_error = |e: CodecError| LoadError::Payload(e.to_string());
    let named: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let (path, encoded) = match api {
        Api::V2 | Api::V2Binary => (
            format!("/v2/models/{model}/infer"),
            codec::encode_request(&named, api == Api::V2Binary).map_err(codec_error)?,
        ),
        Api::Grpc => {
            let request = grpc::wire::infer_request(model, &named);
            return Ok(Payload {
                path: grpc::wire::path("ModelInfer"),
                content_type: "application/grpc",
                header_length: None,
                body: grpc::wire::frame(&request),
            });
        }
        Api::Predict => {
            let [(_, input)] = named.as_slice() else {
                return Err(LoadError::Payload(format!(
                    "/predict serves single-input models; '{model}' has {} inputs",
                    inputs.len()
                )));
            };
            let body =
                codec::predict::encode_predict_request(model, input, true).map_err(codec_error)?;
            let encoded = codec::Encoded {
                body,
                header_length: None,
            };
            ("/predict".into(), encoded)
        }
    };
    // `Bytes`: every request shares the one body (cheap clones).
    Ok(Payload {
        path,
        content_type: encoded.content_type(),
        header_length: encoded.header_length,
        body: encoded.body.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{wire, TensorMetadata};

    fn meta() -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            versions: vec!["1".into()],
            platform: "pytorch_torchscript".into(),
            inputs: vec![TensorMetadata {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 4],
            }],
            outputs: vec![],
        }
    }

    #[test]
    fn payloads_follow_the_metadata_and_the_seed() {
        let p = build(&meta(), Api::V2, &mut Rng::new(7)).unwrap();
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["inputs"][0]["shape"], json!([1, 4]));
        assert_eq!(v["inputs"][0]["data"].as_array().unwrap().len(), 4);
        let again = build(&meta(), Api::V2, &mut Rng::new(7)).unwrap();
        assert_eq!(p.body, again.body, "same seed, same payload");

        let b = build(&meta(), Api::V2Binary, &mut Rng::new(7)).unwrap();
        let len = b.header_length.unwrap();
        let head: Value = serde_json::from_slice(&b.body[..len]).unwrap();
        assert_eq!(head["inputs"][0]["parameters"][wire::BINARY_DATA_SIZE], 16);
        assert_eq!(b.body.len() - len, 16);
        assert_eq!(b.content_type, wire::OCTET_STREAM);
        let p = build(&meta(), Api::Predict, &mut Rng::new(7)).unwrap();
        assert_eq!(p.path, "/predict");
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(
            v["inputs"][0].as_array().unwrap().len(),
            4,
            "one row of 4: {v}"
        );
    }
}
