//! `config.toml` of one model: its tensors, batch limit and queue bound.

use protocol::Signature;
use serde::{Deserialize, Serialize};

pub use protocol::TensorSpec;

/// What a model version's file is, and so which runtime serves it.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Platform {
    /// `model.pt`: a TorchScript module (`torch.jit.script`/`trace` + `save`).
    #[default]
    #[serde(rename = "pytorch_torchscript")]
    TorchScript,
    /// `model.pt2`: an AOTInductor package (`torch.export` +
    /// `torch._inductor.aoti_compile_and_package`).
    #[serde(rename = "pytorch_aoti")]
    Aoti,
}

impl Platform {
    /// The name config.toml and the metadata endpoints use.
    pub fn name(self) -> &'static str {
        match self {
            Platform::TorchScript => "pytorch_torchscript",
            Platform::Aoti => "pytorch_aoti",
        }
    }

    /// The file inside each version folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Platform::TorchScript => "model.pt",
            Platform::Aoti => "model.pt2",
        }
    }
}

/// Queueing and dynamic batching settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Combine requests into one forward pass (needs `max_batch_size` > 1).
    #[serde(default = "yes")]
    pub dynamic: bool,
    /// How long the oldest request may wait for company. 0 (the default) is adaptive: an idle
    /// forward thread takes whatever is queued at once, so light load pays no batching delay.
    #[serde(default, alias = "max_queue_delay_microseconds")]
    pub max_queue_delay_us: u64,
    /// Batch sizes to dispatch at as soon as they are reached, and to cut batches at.
    #[serde(default)]
    pub preferred_batch_sizes: Vec<u64>,
    /// Requests that may wait for the model; beyond this they are answered 429 at once.
    #[serde(default = "default_queue_size")]
    pub max_queue_size: usize,
    /// Priority levels; a request's `priority` parameter picks one (1 is served first).
    #[serde(default = "one")]
    pub priority_levels: usize,
    /// The level of requests without a `priority` (or with 0); defaults to the lowest.
    #[serde(default)]
    pub default_priority_level: Option<usize>,
}

fn yes() -> bool {
    true
}

impl BatchingConfig {
    /// The queue level (0-based, 0 first) for a request's `priority` parameter, if valid.
    pub fn level(&self, priority: Option<u64>) -> Option<usize> {
        match priority.unwrap_or(0) {
            0 => Some(self.default_priority_level.unwrap_or(self.priority_levels) - 1),
            p if p as usize <= self.priority_levels => Some(p as usize - 1),
            _ => None,
        }
    }
}

fn default_queue_size() -> usize {
    256
}

/// Which numeric versions of a model serve (Triton's version policy).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// The N highest versions: `version_policy = { latest = 1 }` (the default).
    Latest(usize),
    /// Every version folder: `version_policy = "all"`.
    All,
    /// Exactly these versions: `version_policy = { specific = [1, 3] }`.
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Picks the versions to serve from those on disk; the error says what is missing.
    pub fn select(&self, mut on_disk: Vec<u64>) -> Result<Vec<u64>, String> {
        on_disk.sort_unstable();
        let chosen: Vec<u64> = match self {
            VersionPolicy::Latest(n) => on_disk.iter().rev().take(*n).rev().copied().collect(),
            VersionPolicy::All => on_disk.clone(),
            VersionPolicy::Specific(wanted) => {
                if let Some(missing) = wanted.iter().find(|v| !on_disk.contains(v)) {
                    return Err(format!(
                        "version_policy names version {missing}, but the folders on disk are {on_disk:?}"
                    ));
                }
                let mut w = wanted.clone();
                w.sort_unstable();
                w.dedup();
                w
            }
        };
        if chosen.is_empty() {
            return Err("no numeric version folder (e.g. 1/model.pt)".into());
        }
        Ok(chosen)
    }
}

/// What the warm-up feeds the model before it is marked ready.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WarmupData {
    Zeros,
    /// Uniform in [0, 1) for floats, 0/1 for integers and booleans (seeded).
    Random,
}

/// Warm-up runs at load time; readiness turns true only after them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WarmupConfig {
    /// Rows per warm-up batch (the `-1` batch dimension).
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "default_warmup_data")]
    pub data: WarmupData,
    /// How many forward passes (the first pays for lazy initialisation in libtorch).
    #[serde(default = "one")]
    pub runs: usize,
}

fn one() -> usize {
    1
}

fn default_warmup_data() -> WarmupData {
    WarmupData::Zeros
}

impl Default for WarmupConfig {
    fn default() -> Self {
        WarmupConfig {
            batch_size: 1,
            data: WarmupData::Zeros,
            runs: 1,
        }
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            dynamic: true,
            max_queue_delay_us: 0,
            preferred_batch_sizes: vec![],
            max_queue_size: default_queue_size(),
            priority_levels: 1,
            default_priority_level: None,
        }
    }
}

/// Most intra-op threads a model or the server may ask libtorch for: OpenMP starts them all on the
/// first parallel pass, and an absurd count would end the process there, not at start-up.
pub const MAX_INTRA_OP_THREADS: usize = 1024;

/// A model's `config.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub platform: Platform,
    /// Most rows one request may carry; 0 means the model takes no batch dimension.
    #[serde(default)]
    pub max_batch_size: usize,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    #[serde(default)]
    pub batching: BatchingConfig,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Overrides `--device` for this model (`cpu`, `cuda`, `cuda:N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Forward threads (model copies) per version, sharing one queue.
    #[serde(default = "one")]
    pub instance_count: usize,
    /// libtorch intra-op threads of this model's forward threads (Triton's `INTRA_OP_THREAD_COUNT`);
    /// 0 = the server's `--intra-op-threads`.
    #[serde(default)]
    pub intra_op_threads: usize,
    #[serde(default)]
    pub warmup: WarmupConfig,
}

impl ModelConfig {
    /// What the codec checks requests against.
    pub fn signature(&self) -> Signature<'_> {
        Signature {
            inputs: &self.inputs,
            outputs: &self.outputs,
            max_batch_size: self.max_batch_size,
        }
    }

    /// Parses and checks a config; the message says what is wrong, the caller adds the file name.
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Checks the fields against each other (also after command-line overrides).
    pub fn check(&self) -> Result<(), String> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("a model needs at least one input and one output".into());
        }
        if self.batching.max_queue_size == 0 {
            return Err("batching.max_queue_size must be at least 1".into());
        }
        let b = &self.batching;
        if b.priority_levels == 0
            || b.default_priority_level
                .is_some_and(|l| l == 0 || l > b.priority_levels)
        {
            return Err(format!(
                "batching: priority_levels must be >= 1 and default_priority_level within 1..={}",
                b.priority_levels
            ));
        }
        if let Some(bad) = b
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size as u64)
        {
            return Err(format!(
                "batching: preferred batch size {bad} is not within 1..=max_batch_size ({})",
                self.max_batch_size
            ));
        }
        if self.instance_count == 0 || self.warmup.batch_size == 0 {
            return Err("instance_count and warmup.batch_size must be at least 1".into());
        }
        if self.intra_op_threads > MAX_INTRA_OP_THREADS {
            return Err(format!(
                "intra_op_threads {} is more than {MAX_INTRA_OP_THREADS}",
                self.intra_op_threads
            ));
        }
        if self.max_batch_size > 0 && self.warmup.batch_size > self.max_batch_size {
            return Err(format!(
                "warmup.batch_size {} exceeds max_batch_size {}",
                self.warmup.batch_size, self.max_batch_size
            ));
        }
        if let VersionPolicy::Latest(0) = self.version_policy {
            return Err("version_policy latest must be at least 1".into());
        }
        if let Some(d) = &self.device {
            d.parse::<crate::device::DeviceChoice>()
                .map_err(|e| format!("device: {e}"))?;
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
            if kind == "input" && spec.label_filename.is_some() {
                return Err(format!(
                    "input '{}': label_filename is for outputs",
                    spec.name
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

    /// README's annotated `config.toml` is a config this code accepts, and the defaults it shows
    /// are the defaults (it sets only `max_batch_size`, the inputs and the outputs otherwise).
    #[test]
    fn the_readme_config_shows_the_defaults() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("A model's `config.toml`")
            .expect("README config section");
        let block = &readme[start..];
        let body = &block[block.find("```toml\n").expect("toml block") + 8..];
        let shown = ModelConfig::parse(&body[..body.find("```").unwrap()]).unwrap();
        let minimal = "max_batch_size = 64
            [[inputs]]
            name = \"pixels\"
            datatype = \"FP32\"
            shape = [-1, 64]
            [[outputs]]
            name = \"logits\"
            datatype = \"FP32\"
            shape = [-1, 10]";
        assert_eq!(shown, ModelConfig::parse(minimal).unwrap());
    }

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
        assert_eq!(c.platform, Platform::TorchScript);
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.inputs[0].datatype, protocol::Datatype::Fp32);
        assert_eq!(c.batching, BatchingConfig::default());
        assert!(c.batching.dynamic && c.batching.max_queue_delay_us == 0);
        assert_eq!(c.version_policy, VersionPolicy::Latest(1));
        assert_eq!(c.instance_count, 1);
        assert_eq!(c.warmup, WarmupConfig::default());
    }

    #[test]
    fn priorities_map_to_levels() {
        let mut b = BatchingConfig {
            priority_levels: 3,
            ..Default::default()
        };
        assert_eq!(b.level(None), Some(2), "default is the lowest level");
        assert_eq!(b.level(Some(0)), Some(2));
        assert_eq!(b.level(Some(1)), Some(0));
        assert_eq!(b.level(Some(3)), Some(2));
        assert_eq!(b.level(Some(4)), None);
        b.default_priority_level = Some(2);
        assert_eq!(b.level(None), Some(1));
        let c = ModelConfig::parse(&format!("{GOOD}\n[batching]\nmax_queue_delay_microseconds = 500\npreferred_batch_sizes = [4, 8]")).unwrap();
        assert_eq!(c.batching.max_queue_delay_us, 500);
        assert_eq!(c.batching.preferred_batch_sizes, vec![4, 8]);
    }

    #[test]
    fn version_policies_parse_and_select() {
        let p = |t: &str| {
            ModelConfig::parse(&format!("version_policy = {t}\n{GOOD}")).map(|c| c.version_policy)
        };
        assert_eq!(p("\"all\"").unwrap(), VersionPolicy::All);
        assert_eq!(p("{ latest = 2 }").unwrap(), VersionPolicy::Latest(2));
        assert_eq!(
            p("{ specific = [3, 1] }").unwrap(),
            VersionPolicy::Specific(vec![3, 1])
        );
        assert!(p("{ latest = 0 }").is_err());
        let disk = vec![3, 1, 10, 2];
        assert_eq!(VersionPolicy::Latest(1).select(disk.clone()), Ok(vec![10]));
        assert_eq!(
            VersionPolicy::Latest(2).select(disk.clone()),
            Ok(vec![3, 10])
        );
        assert_eq!(
            VersionPolicy::All.select(disk.clone()),
            Ok(vec![1, 2, 3, 10])
        );
        assert_eq!(
            VersionPolicy::Specific(vec![3, 1, 3]).select(disk.clone()),
            Ok(vec![1, 3])
        );
        assert!(VersionPolicy::Specific(vec![4])
            .select(disk)
            .unwrap_err()
            .contains("version 4"));
        assert!(VersionPolicy::All.select(vec![]).is_err());
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
            (
                format!("platform = \"onnx\"\n{GOOD}"),
                "unknown variant `onnx`, expected `pytorch_torchscript` or `pytorch_aoti`",
            ),
            (format!("colour = 1\n{GOOD}"), "unknown field `colour`"),
            ("max_batch_size = 1".to_string(), "missing field `inputs`"),
            (
                format!("device = \"tpu\"\n{GOOD}"),
                "device: 'tpu' is not one of",
            ),
            (
                format!("instance_count = 0\n{GOOD}"),
                "instance_count and warmup.batch_size",
            ),
            (
                format!("intra_op_threads = 5000\n{GOOD}"),
                "intra_op_threads 5000 is more than 1024",
            ),
            (
                format!("{GOOD}\n[warmup]\nbatch_size = 9"),
                "exceeds max_batch_size 8",
            ),
            (
                format!("{GOOD}\n[batching]\npreferred_batch_sizes = [16]"),
                "preferred batch size 16",
            ),
            (
                format!("{GOOD}\n[batching]\npriority_levels = 2\ndefault_priority_level = 3"),
                "default_priority_level within 1..=2",
            ),
        ];
        for (text, want) in cases {
            let err = ModelConfig::parse(&text).unwrap_err();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }
}
