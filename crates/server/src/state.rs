//! Shared state handed to every handler: the config, the metrics, the model [`Registry`], the
//! in-flight limit and whether the server is draining. Cheap to clone: one `Arc`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    metrics: Arc<Metrics>,
    registry: Registry,
    draining: AtomicBool,
    inflight: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Scans the repository and starts every model version's threads; returns at once while they
    /// load in the background.
    pub fn start(config: ServerConfig) -> Result<AppState, crate::StartupError> {
        let metrics = Arc::new(Metrics::new(crate::error::outcomes()));
        let registry = Registry::start(&config, metrics.clone())?;
        Ok(AppState {
            inner: Arc::new(Inner {
                metrics,
                registry,
                draining: AtomicBool::new(false),
                inflight: Arc::new(tokio::sync::Semaphore::new(config.max_inflight)),
                config,
            }),
        })
    }

    /// SIGTERM arrived: readiness answers 503 from now on.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// The global in-flight limit shared by every inference route.
    pub fn inflight(&self) -> Arc<tokio::sync::Semaphore> {
        self.inner.inflight.clone()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn max_body_size(&self) -> usize {
        self.inner.config.max_body_size
    }

    /// `/v2/health/ready`: not draining, and the registry is ready.
    pub fn all_ready(&self) -> bool {
        !self.is_draining() && self.inner.registry.ready()
    }

    /// Waits until every version has finished loading; returns the failures (model, reason).
    pub async fn settled(&self) -> Vec<(String, String)> {
        self.inner.registry.settled().await
    }
}
