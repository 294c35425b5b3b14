//! The live model registry: name -> versions being served, or why none can be. Look-up, load,
//! unload, the repository index and readiness; no HTTP here ([`RegistryError`] says what went
//! wrong, `error.rs` says what status that is). The map sits behind a std `RwLock` that is only
//! ever held for look-ups and swaps, never across an `.await`; load and unload are serialised by
//! an async mutex.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::config::{BatchOverrides, ModelControl, ServerConfig};
use crate::device::DeviceChoice;
use crate::metrics::Metrics;
use crate::repository::{self, ModelSource};
use crate::runtime::{self, Model, ModelState};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such model (or version).
    #[error("{0}")]
    NotFound(String),
    /// The model folder is unusable (bad config, no version, bad device): the reason.
    #[error("model is not ready: {0}")]
    Unavailable(String),
    /// Load and unload are off (`--model-control none`).
    #[error("model control is disabled: start the server with --model-control explicit to load and unload models over HTTP (loading TorchScript runs code from the file)")]
    ControlDisabled,
    /// A model name that cannot be a repository folder.
    #[error("{0}")]
    InvalidName(String),
    /// A `load` failed; the index shows the reason too.
    #[error("{0}")]
    LoadFailed(String),
}

impl RegistryError {
    /// Stable label used as `error_type` and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::NotFound(_) => "model_not_found",
            RegistryError::Unavailable(_) => "model_not_ready",
            RegistryError::ControlDisabled => "model_control_disabled",
            RegistryError::InvalidName(_) => "invalid_input",
            RegistryError::LoadFailed(_) => "load_failed",
        }
    }

    /// One value of each variant, so that lists of kinds can be derived rather than copied.
    pub fn one_of_each() -> Vec<RegistryError> {
        let s = || String::from("x");
        vec![
            RegistryError::NotFound(s()),
            RegistryError::Unavailable(s()),
            RegistryError::ControlDisabled,
            RegistryError::InvalidName(s()),
            RegistryError::LoadFailed(s()),
        ]
    }
}

/// What the registry needs of the server's config.
#[derive(Clone, Debug)]
struct Settings {
    repository: PathBuf,
    control: ModelControl,
    strict: bool,
    overrides: BatchOverrides,
    device: DeviceChoice,
}

/// A model name's entry: the versions being served, or why none can be.
#[derive(Clone, Default)]
pub struct ModelEntry {
    pub versions: BTreeMap<u64, Arc<Model>>,
    /// Set when the model folder itself is unusable (bad config, no version, bad device).
    pub failure: Option<String>,
}

/// One row of `POST /v2/repository/index` (Triton's shape).
#[derive(Debug, Serialize, PartialEq)]
pub struct IndexRow {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The registry; one per server, shared by every handler through `AppState`.
pub struct Registry {
    config: Settings,
    metrics: Arc<Metrics>,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    control: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Scans the repository and starts every model version's threads; returns at once while they
    /// load in the background.
    pub fn start(
        config: &ServerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Registry, crate::StartupError> {
        runtime::resolve_device(config.device).map_err(crate::StartupError::Device)?;
        let scan = repository::scan(&config.model_repository)?;
        let registry = Registry {
            config: Settings {
                repository: config.model_repository.clone(),
                control: config.model_control,
                strict: config.strict_models,
                overrides: config.overrides.clone(),
                device: config.device,
            },
            metrics,
            models: RwLock::new(BTreeMap::new()),
            control: tokio::sync::Mutex::new(()),
        };
        let mut models = BTreeMap::new();
        for failure in scan.failures {
            tracing::error!(model = %failure.name, reason = %failure.reason, "model not loaded");
            let entry = ModelEntry {
                versions: BTreeMap::new(),
                failure: Some(failure.reason),
            };
            models.insert(failure.name, entry);
        }
        for source in scan.models {
            let entry = registry
                .start_entry(source)
                .map_err(crate::StartupError::Thread)?;
            models.insert(entry.0, entry.1);
        }
        *registry.models.write().unwrap_or_else(|e| e.into_inner()) = models;
        Ok(registry)
    }

    fn start_entry(&self, source: ModelSource) -> std::io::Result<(String, ModelEntry)> {
        let name = source.name.clone();
        Ok((name, self.start_versions(source)?))
    }

    fn start_versions(&self, mut source: ModelSource) -> std::io::Result<ModelEntry> {
        self.config.overrides.apply(&mut source.config);
        if let Err(why) = source.config.check() {
            let why = format!("{} (after command-line overrides)", why);
            tracing::error!(model = %source.name, reason = %why, "model not loaded");
            return Ok(ModelEntry {
                versions: BTreeMap::new(),
                failure: Some(why),
            });
        }
        let choice = match &source.config.device {
            Some(d) => d.parse().unwrap_or(self.config.device),
            None => self.config.device,
        };
        let device = match runtime::resolve_device(choice) {
            Ok(d) => d,
            Err(why) => {
                tracing::error!(model = %source.name, reason = %why, "model not loaded");
                return Ok(ModelEntry {
                    versions: BTreeMap::new(),
                    failure: Some(why),
                });
            }
        };
        let config = Arc::new(source.config);
        let mut versions = BTreeMap::new();
        for v in source.versions {
            tracing::info!(model = %source.name, version = v.version, ?device, "loading model");
            let metrics = self.metrics.model(&source.name, v.version);
            let version = v.version;
            versions.insert(
                version,
                Model::start(&source.name, config.clone(), v, device, metrics)?,
            );
        }
        Ok(ModelEntry {
            versions,
            failure: None,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelEntry>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn entry(&self, name: &str) -> Option<ModelEntry> {
        self.read().get(name).cloned()
    }

    /// Every served model version.
    pub fn models(&self) -> Vec<Arc<Model>> {
        self.read()
            .values()
            .flat_map(|e| e.versions.values().cloned())
            .collect()
    }

    /// The version to serve: the one named, else the highest ready one (else the highest). On every
    /// request: looks under the read lock and clones one `Arc`, never the entry.
    pub fn lookup(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>, RegistryError> {
        let models = self.read();
        let entry = models
            .get(name)
            .ok_or_else(|| RegistryError::NotFound(format!("unknown model '{name}'")))?;
        if let Some(why) = &entry.failure {
            return Err(RegistryError::Unavailable(why.clone()));
        }
        let versions = &entry.versions;
        match version {
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|n| versions.get(&n).cloned())
                .ok_or_else(|| {
                    RegistryError::NotFound(format!(
                        "model '{name}' has no version '{v}' (serving {:?})",
                        versions.keys().collect::<Vec<_>>()
                    ))
                }),
            None => versions
                .values()
                .rev()
                .find(|m| m.is_ready())
                .or_else(|| versions.values().next_back())
                .cloned()
                .ok_or_else(|| RegistryError::NotFound(format!("model '{name}' has no versions"))),
        }
    }

    /// Ready when no version is still loading and at least one serves: failed models are reported,
    /// not waited for (unless `--strict-models`), but a registry with nothing to serve is not ready.
    pub fn ready(&self) -> bool {
        let states: Vec<ModelState> = self.models().iter().map(|m| m.state()).collect();
        let failed = self.read().values().any(|e| e.failure.is_some())
            || states.iter().any(|s| matches!(s, ModelState::Failed(_)));
        let blocked = states.contains(&ModelState::Loading) || (self.config.strict && failed);
        !blocked && states.contains(&ModelState::Ready)
    }

    /// Waits until every version has finished loading; returns the failures (model, reason).
    pub async fn settled(&self) -> Vec<(String, String)> {
        let mut failures: Vec<(String, String)> = self
            .read()
            .iter()
            .filter_map(|(n, e)| e.failure.clone().map(|f| (n.clone(), f)))
            .collect();
        for m in self.models() {
            if let ModelState::Failed(why) = m.settled().await {
                failures.push((format!("{}/{}", m.name, m.version), why));
            }
        }
        failures
    }

    /// The repository index: every model folder known, with its state and reason.
    pub fn index(&self) -> Vec<IndexRow> {
        let mut rows = Vec::new();
        for (name, entry) in self.read().iter() {
            if let Some(why) = &entry.failure {
                rows.push(IndexRow {
                    name: name.clone(),
                    version: None,
                    state: "UNAVAILABLE",
                    reason: why.clone(),
                });
            }
            for (v, m) in &entry.versions {
                let (state, reason) = match m.state() {
                    ModelState::Loading => ("LOADING", String::new()),
                    ModelState::Ready => ("READY", String::new()),
                    ModelState::Failed(why) => ("UNAVAILABLE", why),
                };
                rows.push(IndexRow {
                    name: name.clone(),
                    version: Some(v.to_string()),
                    state,
                    reason,
                });
            }
        }
        rows
    }

    fn check_control(&self) -> Result<(), RegistryError> {
        match self.config.control {
            ModelControl::Explicit => Ok(()),
            ModelControl::None => Err(RegistryError::ControlDisabled),
        }
    }

    /// (Re)loads a model folder and waits until it serves; the previous versions keep serving until
    /// the new ones are ready, then finish their queues and exit.
    pub async fn load(&self, name: &str) -> Result<(), RegistryError> {
        self.check_control()?;
        repository::validate_name(name).map_err(RegistryError::InvalidName)?;
        let _serialised = self.control.lock().await;
        let source = repository::read_model(&self.config.repository, name)
            .map_err(|why| RegistryError::LoadFailed(format!("failed to load '{name}': {why}")))?;
        let entry = self
            .start_versions(source)
            .map_err(|e| RegistryError::LoadFailed(format!("failed to load '{name}': {e}")))?;
        let mut failures = Vec::new();
        if let Some(why) = &entry.failure {
            failures.push(why.clone());
        }
        for m in entry.versions.values() {
            if let ModelState::Failed(why) = m.settled().await {
                failures.push(format!("version {}: {why}", m.version));
            }
        }
        let old = self
            .models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), entry);
        self.forget_gone(old, name);
        if failures.is_empty() {
            tracing::info!(model = %name, "model loaded over the repository API");
            Ok(())
        } else {
            Err(RegistryError::LoadFailed(format!(
                "failed to load '{name}': {}",
                failures.join("; ")
            )))
        }
    }

    /// Stops serving a model; requests already queued still finish.
    pub async fn unload(&self, name: &str) -> Result<(), RegistryError> {
        self.check_control()?;
        repository::validate_name(name).map_err(RegistryError::InvalidName)?;
        let _serialised = self.control.lock().await;
        let old = self
            .models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if old.is_none() {
            return Err(RegistryError::NotFound(format!("unknown model '{name}'")));
        }
        self.forget_gone(old, name);
        tracing::info!(model = %name, "model unloaded over the repository API");
        Ok(())
    }

    /// Drops the metric series of versions that are no longer served.
    fn forget_gone(&self, old: Option<ModelEntry>, name: &str) {
        let now = self.entry(name).unwrap_or_default();
        for v in old
            .map(|e| e.versions.into_keys().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !now.versions.contains_key(&v) {
                self.metrics.forget_model(name, v);
            }
        }
    }
}
