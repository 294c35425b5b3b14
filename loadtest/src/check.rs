//! Answers read through the same codec the server encodes with: the first successful answer on
//! each connection is decoded (`protocol::codec`) and its outputs compared with the model's
//! metadata. One that does not decode counts as `undecodable`, an error like a 5xx, and its reason
//! is printed once: a server answering 200 with a body no client can read is not healthy.
//! (Decoding every answer would cost the tester more CPU than some servers spend on them.)

use std::sync::atomic::{AtomicBool, Ordering};

use protocol::{codec, ModelMetadata};
use serde_json::Value;

use crate::cli::Api;

/// What a successful answer must decode to.
#[derive(Debug)]
pub struct Check {
    api: Api,
    outputs: Vec<String>,
    reported: AtomicBool,
}

impl Check {
    pub fn new(api: Api, meta: &ModelMetadata) -> Check {
        Check {
            api,
            outputs: meta.outputs.iter().map(|t| t.name.clone()).collect(),
            reported: AtomicBool::new(false),
        }
    }

    /// Whether `body` (with the answer's header-length header, if any) decodes as expected; the
    /// first failure's reason goes to stderr.
    pub fn verify(&self, header_length: Option<&[u8]>, body: &[u8]) -> bool {
        let result = match self.api {
            Api::V2 | Api::V2Binary => self.v2(header_length, body),
            Api::Predict => predict(body),
            Api::Grpc => self.grpc(body),
        };
        match result {
            Ok(()) => true,
            Err(why) => {
                if !self.reported.swap(true, Ordering::Relaxed) {
                    eprintln!("loadtest: a successful answer does not decode: {why}");
                }
                false
            }
        }
    }

    fn v2(&self, header_length: Option<&[u8]>, body: &[u8]) -> Result<(), String> {
        let split = codec::header_length(header_length).map_err(|e| e.to_string())?;
        let decoded = codec::decode_response(split, body).map_err(|e| e.to_string())?;
        let got: Vec<&str> = decoded.outputs.iter().map(|(n, _)| n.as_str()).collect();
        if got != self.outputs {
            return Err(format!(
                "the answer has outputs {got:?}, the model's metadata lists {:?}",
                self.outputs
            ));
        }
        Ok(())
    }
}

impl Check {
    fn grpc(&self, body: &[u8]) -> Result<(), String> {
        use prost::Message;
        let message = grpc::wire::unframe(body)?;
        let reply = grpc::pb::ModelInferResponse::decode(message).map_err(|e| e.to_string())?;
        let got: Vec<&str> = reply.outputs.iter().map(|o| o.name.as_str()).collect();
        if got != self.outputs || reply.raw_output_contents.len() != got.len() {
            return Err(format!(
                "the answer has outputs {got:?} and {} raw contents, the model's metadata lists {:?}",
                reply.raw_output_contents.len(),
                self.outputs
            ));
        }
        Ok(())
    }
}

fn predict(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    match v.get("outputs") {
        Some(Value::Array(_)) => Ok(()),
        _ => Err(format!("answer has no outputs list: {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::TensorMetadata;

    #[test]
    fn outputs_must_decode_and_match_the_metadata() {
        let meta = ModelMetadata {
            name: "m".into(),
            versions: vec![],
            platform: String::new(),
            inputs: vec![],
            outputs: vec![TensorMetadata {
                name: "y".into(),
                datatype: "FP32".into(),
                shape: vec![-1],
            }],
        };
        let check = Check::new(Api::V2, &meta);
        let answer = |name: &str, shape: &str| {
            format!(
                r#"{{"model_name":"m","outputs":[{{"name":"{name}","shape":{shape},"datatype":"FP32","data":[0.5]}}]}}"#
            )
        };
        assert!(check.v2(None, answer("y", "[1]").as_bytes()).is_ok());
        let other = check.v2(None, answer("z", "[1]").as_bytes()).unwrap_err();
        assert!(other.contains("outputs [\"z\"]"), "{other}");
        let lying = check.v2(None, answer("y", "[2]").as_bytes()).unwrap_err();
        assert!(lying.contains("expected 2 elements"), "{lying}");
        assert!(!check.verify(Some(b"x"), b"{}"));
        assert!(predict(br#"{"outputs":[[1]]}"#).is_ok());
        assert!(predict(b"<html>").is_err());
    }
}
