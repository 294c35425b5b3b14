//! `config.toml` of one model: its tensors, batch limit and queue bound.

use protocol::Datatype;
use serde::Deserialize;

/// The only platform this server runs.
pub const PLATFORM: &str = "pytorch_torchscript";

/// One declared input or output. `shape` includes the batch dimension as `-1` when batching.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

/// Queueing settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Requests that may wait for the model; beyond this they are answered 429 at once.
    #[serde(default = "default_queue_size")]
    pub max_queue_size: usize,
}

fn default_queue_size() -> usize {
    256
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_queue_size: default_queue_size(),
        }
    }
}

/// A model's `config.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "default_platform")]
    pub platform: String,
    /// Most rows one request may carry; 0 means the model takes no batch dimension.
    #[serde(default)]
    pub max_batch_size: usize,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    #[serde(default)]
    pub batching: BatchingConfig,
}

fn default_platform() -> String {
    PLATFORM.to_string()
}

impl ModelConfig {
    /// Parses and checks a config; the message says what is wrong, the caller adds the file name.
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.platform != PLATFORM {
            return Err(format!(
                "platform '{}' is not supported (only '{PLATFORM}')",
                self.platform
            ));
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("a model needs at least one input and one output".into());
        }
        if self.batching.max_queue_size == 0 {
            return Err("batching.max_queue_size must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (kind, spec) in self
            .inputs
            .iter()
            .map(|s| ("input", s))
            .chain(self.outputs.iter().map(|s| ("output", s)))
        {
            if spec.name.is_empty() || !seen.insert((kind, spec.name.as_str())) {
                return Err(format!("{kind} name '{}' is empty or repeated", spec.name));
            }
            if !spec.datatype.has_torch_kind() {
                return Err(format!(
                    "{kind} '{}': datatype {} has no libtorch tensor kind",
                    spec.name, spec.datatype
                ));
            }
            if spec.shape.iter().any(|&d| d < -1) {
                return Err(format!(
                    "{kind} '{}': dimensions must be -1 or >= 0",
                    spec.name
                ));
            }
            if self.max_batch_size > 0 && spec.shape.first() != Some(&-1) {
                return Err(format!(
                    "{kind} '{}': with max_batch_size > 0 the first dimension must be -1 (the batch)",
                    spec.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        max_batch_size = 8
        [[inputs]]
        name = "x"
        datatype = "FP32"
        shape = [-1, 4]
        [[outputs]]
        name = "y"
        datatype = "FP32"
        shape = [-1, 2]
    "#;

    #[test]
    fn parses_a_good_config_with_defaults() {
        let c = ModelConfig::parse(GOOD).unwrap();
        assert_eq!(c.platform, PLATFORM);
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.inputs[0].datatype, Datatype::Fp32);
        assert_eq!(c.batching.max_queue_size, 256);
    }

    #[test]
    fn explains_what_is_wrong() {
        let cases = [
            (
                GOOD.replace(
                    "FP32\"\n        shape = [-1, 4]",
                    "FP33\"\n        shape = [-1, 4]",
                ),
                "unknown datatype 'FP33'",
            ),
            (
                GOOD.replace("[-1, 4]", "[4, 4]"),
                "first dimension must be -1",
            ),
            (GOOD.replace("[-1, 4]", "[-1, -4]"), "must be -1 or >= 0"),
            (
                GOOD.replace("\"y\"", "\"x\"").replace(
                    "name = \"x\"\n        datatype = \"FP32\"\n        shape = [-1, 4]",
                    "name = \"x\"\n        datatype = \"UINT32\"\n        shape = [-1, 4]",
                ),
                "no libtorch tensor kind",
            ),
            (format!("platform = \"onnx\"\n{GOOD}"), "platform 'onnx'"),
            (format!("colour = 1\n{GOOD}"), "unknown field `colour`"),
            ("max_batch_size = 1".to_string(), "missing field `inputs`"),
        ];
        for (text, want) in cases {
            let err = ModelConfig::parse(&text).unwrap_err();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }
}
