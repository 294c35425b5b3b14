//! torchship's inference server as a library; `main.rs` only parses flags and calls [`run`].
//!
//! Map of the crate:
//! - [`config`]: flags (each with a `TORCHSHIP_*` env var) and the typed [`ServerConfig`].
//! - [`repository`]: the Triton-like model repository on disk and each model's `config.toml`.
//! - [`runtime`]: libtorch: one dedicated OS thread per model owns the `CModule`, fed by a bounded
//!   queue; tensors cross as bytes ([`runtime::TensorData`]).
//! - [`inference`]: request validation (before any tensor exists) and response building.
//! - [`api`]: the axum router: v2 protocol, `/predict`, health.
//! - [`error`]: the single mapping from errors to HTTP status codes and JSON bodies.
//! - [`state`]: what every handler shares.

pub mod api;
pub mod config;
pub mod error;
pub mod inference;
pub mod repository;
pub mod runtime;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::{Args, DeviceChoice, ServerConfig};
pub use state::AppState;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The model repository cannot be read.
    #[error(transparent)]
    Repository(#[from] repository::RepositoryError),
    /// A CUDA device was asked for but libtorch sees none.
    #[error("--device {0} was requested but libtorch sees no CUDA device (CUDA available: {1}, devices: {2}); use --device cpu or auto")]
    NoCuda(String, bool, i64),
    /// A forward thread could not be started.
    #[error("cannot start a forward thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The HTTP server failed.
    #[error("HTTP server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Resolves `--device` against what libtorch actually sees.
pub fn resolve_device(choice: DeviceChoice) -> Result<tch::Device, StartupError> {
    let available = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Auto if available => Ok(tch::Device::Cuda(0)),
        DeviceChoice::Auto => Ok(tch::Device::Cpu),
        DeviceChoice::Cuda(n) if available && (n as i64) < count => Ok(tch::Device::Cuda(n)),
        DeviceChoice::Cuda(n) => Err(StartupError::NoCuda(format!("cuda:{n}"), available, count)),
    }
}

/// Scans the repository and starts every model's forward thread. Returns at once: models load and
/// warm up in the background, and readiness reports when they are done.
pub fn start_models(config: &ServerConfig) -> Result<AppState, StartupError> {
    if config.intra_op_threads > 0 {
        tch::set_num_threads(config.intra_op_threads as i32);
    }
    let device = resolve_device(config.device)?;
    let scan = repository::scan(&config.model_repository)?;
    for failure in &scan.failures {
        tracing::error!(model = %failure.name, reason = %failure.reason, "model not loaded");
    }
    let mut models = Vec::new();
    for source in scan.models {
        tracing::info!(model = %source.name, version = source.version, ?device, "loading model");
        models.push(runtime::Model::start(source, device).map_err(StartupError::Thread)?);
    }
    Ok(AppState::new(models, scan.failures, config.max_body_size))
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartupError::Serve)
}

/// Starts the models and serves them on `listener`.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let state = start_models(&config)?;
    serve(listener, state, shutdown).await
}
