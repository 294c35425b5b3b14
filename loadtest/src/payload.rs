//! Request bodies generated from the model's v2 metadata: one row of random data of the right shape
//! and datatype (seeded, so runs are repeatable), encoded as the chosen API expects.

use protocol::{Datatype, ModelMetadata};
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

/// Builds the payload for `api` from the model's metadata (batch dimension 1).
pub fn build(meta: &ModelMetadata, api: Api, rng: &mut Rng) -> Result<Payload, LoadError> {
    let mut inputs = Vec::new();
    let mut raw = Vec::new();
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
        let data: Vec<Value> = (0..n).map(|_| element(dt, rng)).collect();
        inputs.push((t.name.clone(), shape, dt, data));
    }
    let model = &meta.name;
    let (path, body, header_length, content_type) = match api {
        Api::V2 => {
            let inputs: Vec<Value> = inputs.iter().map(|(name, shape, dt, data)| json!({"name": name, "shape": shape, "datatype": dt.as_str(), "data": data})).collect();
            (
                format!("/v2/models/{model}/infer"),
                serde_json::to_vec(&json!({"inputs": inputs})).expect("JSON"),
                None,
                "application/json",
            )
        }
        Api::V2Binary => {
            let mut header_inputs = Vec::new();
            for (name, shape, dt, data) in &inputs {
                let start = raw.len();
                protocol::json_to_bytes(&Value::Array(data.clone()), *dt, data.len(), &mut raw)
                    .map_err(|e| LoadError::Payload(e.to_string()))?;
                header_inputs.push(json!({"name": name, "shape": shape, "datatype": dt.as_str(), "parameters": {"binary_data_size": raw.len() - start}}));
            }
            let mut body = serde_json::to_vec(
                &json!({"inputs": header_inputs, "parameters": {"binary_data_output": true}}),
            )
            .expect("JSON");
            let len = body.len();
            body.extend_from_slice(&raw);
            (
                format!("/v2/models/{model}/infer"),
                body,
                Some(len),
                "application/octet-stream",
            )
        }
        Api::Predict => {
            let [(_, _, _, data)] = inputs.as_slice() else {
                return Err(LoadError::Payload(format!(
                    "/predict serves single-input models; '{model}' has {} inputs",
                    inputs.len()
                )));
            };
            (
                "/predict".into(),
                serde_json::to_vec(&json!({"model": model, "inputs": [data]})).expect("JSON"),
                None,
                "application/json",
            )
        }
    };
    // `Bytes`: every request shares the one body (cheap clones).
    Ok(Payload {
        path,
        body: body.into(),
        header_length,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::TensorMetadata;

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
        assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(b.body.len() - len, 16);
        let p = build(&meta(), Api::Predict, &mut Rng::new(7)).unwrap();
        assert_eq!(p.path, "/predict");
    }
}
