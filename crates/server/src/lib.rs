//! torchship's inference server as a library; `main.rs` only parses flags and calls [`start`] and
//! [`serve`].
//!
//! Map of the crate:
//! The request path is a straight line, one file per stage:
//! decode (`protocol::codec`, in the protocol crate) → look up ([`registry`]) → queue, batch and
//! forward ([`runtime`]) → encode (`protocol::codec`) → respond; the handlers ([`api`]: `v2.rs`,
//! `predict.rs`, `repository.rs`) only wire those together, and [`error`] maps every stage's
//! error to its status.
//!
//! - [`config`]: flags (each with a `TORCHSHIP_*` env var) and the typed [`ServerConfig`];
//!   [`control_key`]: the key restricted endpoints require; [`device`]: `cpu`, `cuda:N`, `auto`.
//! - [`repository`]: the Triton-like model repository on disk and each model's `config.toml`.
//! - [`registry`]: the live models (look-up, load, unload, index, readiness), no HTTP in it.
//! - [`runtime`]: libtorch: dedicated OS threads per model version own the modules (TorchScript
//!   `CModule`s, or AOTInductor packages through [`runtime::aoti`]'s C++ bridge), fed by a bounded
//!   queue; tensors cross as bytes ([`runtime::TensorData`], the codec's `Tensor`).
//! - [`state`]: what every handler shares: config, metrics, registry, in-flight limit, draining.
//! - [`api`]: the axum router: v2 protocol with Triton's extensions (binary data, repository,
//!   classification, statistics, logging), `/predict`, health, metrics, request ids and access log.
//! - [`metrics`]: the Prometheus registry; [`cuda`] reads device memory for it.
//! - [`logging`]: the process's one log subscriber, its level changeable at run time (Triton's
//!   logging extension).
//! - [`omp`]: OpenMP's wait policy (passive), set by starting the binary again before it serves.
//! - [`serve`]: the accept loop (header timeout) and the SIGTERM sequence: readiness 503, shutdown
//!   delay, listener closed, drain with a deadline.
//! - [`error`]: the single mapping from errors to HTTP status codes and JSON bodies.

pub mod api;
pub mod config;
pub mod control_key;
pub mod cuda;
pub mod device;
pub mod error;
pub mod healthcheck;
pub mod logging;
pub mod metrics;
pub mod omp;
pub mod registry;
pub mod repository;
pub mod runtime;
pub mod serve;
pub mod state;

use std::future::Future;

pub use config::{Args, DeviceChoice, ServerConfig};
pub use state::AppState;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The model repository cannot be read.
    #[error(transparent)]
    Repository(#[from] repository::RepositoryError),
    /// The requested device does not exist.
    #[error("{0}")]
    Device(String),
    /// A forward thread could not be started.
    #[error("cannot start a forward thread: {0}")]
    Thread(#[source] std::io::Error),
    /// `--strict-models` and some model failed.
    #[error("--strict-models: {} model(s) failed to load: {}", .0.len(), .0.iter().map(|(m, why)| format!("{m}: {why}")).collect::<Vec<_>>().join("; "))]
    StrictModels(Vec<(String, String)>),
    /// The HTTP server failed.
    #[error("HTTP server error: {0}")]
    Serve(#[source] std::io::Error),
    /// Requests were still running when the drain timeout passed.
    #[error("requests were still in flight when the {0:?} drain timeout passed")]
    DrainTimeout(std::time::Duration),
}

/// Sets libtorch's thread pools, scans the repository and starts every model version. Models load in
/// the background and readiness reports when they are done; under `--strict-models` this waits for
/// them and fails if any did.
pub async fn start(config: ServerConfig) -> Result<AppState, StartupError> {
    runtime::set_intra_op_threads(config.intra_op());
    if config.inter_op_threads > 0 {
        tch::set_num_interop_threads(config.inter_op_threads as i32);
    }
    let strict = config.strict_models;
    let state = AppState::start(config)?;
    if strict {
        let failures = state.settled().await;
        if !failures.is_empty() {
            return Err(StartupError::StrictModels(failures));
        }
    }
    Ok(state)
}

/// Serves `state` on its listeners (see [`serve::Listeners`]) until `shutdown` resolves, then runs
/// the shutdown sequence (see [`serve`](mod@serve)) with the config's timings.
pub async fn serve(
    listeners: serve::Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let timings = state.config().timings();
    serve::serve(listeners, state, timings, shutdown).await
}
