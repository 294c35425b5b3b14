//! The libtorch side. Each model version has a [`batcher`] task that owns its bounded queue and forms
//! batches, and `instance_count` dedicated OS threads (never tokio workers), each owning a copy of the
//! model (a TorchScript `CModule` or an [`aoti`] package, behind one `module::Module`), that run
//! them; callers wait on a oneshot reply. Threads load and warm up their module in the background
//! and the version turns ready only when all have, so a slow load never blocks the HTTP server or
//! its liveness.

pub mod aoti;
pub mod batcher;
mod module;
pub mod tensor;
mod worker;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tch::Device;
use tokio::sync::{oneshot, watch};

use crate::metrics::ModelMetrics;
use crate::repository::{ModelConfig, VersionSource};
pub use module::Module;
pub use tensor::TensorData;

/// Why an inference could not be served by the runtime. `Clone` because one failed forward pass
/// answers every request of its batch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model's queue holds `max_queue_size` requests already.
    #[error("the model's queue is full ({0} waiting); retry later")]
    QueueFull(usize),
    /// The model is still loading, failed to load, or was unloaded.
    #[error("model is not ready: {0}")]
    NotReady(String),
    /// The deadline passed before the forward pass started (or finished).
    #[error("{}", if *.client { "the request's own timeout passed before it was served" } else { "the server's deadline passed before the request was served" })]
    DeadlineExceeded { client: bool },
    /// libtorch reported an error (during forward, or while building tensors).
    #[error("libtorch error: {0}")]
    Torch(String),
    /// Input or output bytes that do not form a tensor.
    #[error("{0}")]
    Tensor(String),
    /// The model returned something other than its config declares.
    #[error("model output does not match its config: {0}")]
    OutputMismatch(String),
    /// libtorch or tch panicked; the thread survived and keeps serving.
    #[error("the forward pass panicked: {0}")]
    Panicked(String),
}

impl From<tch::TchError> for RuntimeError {
    fn from(e: tch::TchError) -> Self {
        RuntimeError::Torch(e.to_string())
    }
}

impl RuntimeError {
    /// Stable label for JSON errors and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeError::QueueFull(_) => "queue_full",
            RuntimeError::NotReady(_) => "model_not_ready",
            RuntimeError::DeadlineExceeded { client: false } => "deadline_exceeded",
            RuntimeError::DeadlineExceeded { client: true } => "client_timeout",
            RuntimeError::Torch(_) => "inference_failed",
            RuntimeError::Tensor(_) => "tensor_error",
            RuntimeError::OutputMismatch(_) => "output_mismatch",
            RuntimeError::Panicked(_) => "inference_panicked",
        }
    }
}

/// The intra-op thread count every forward thread applies to itself when it starts.
static INTRA_OP_THREADS: AtomicI32 = AtomicI32::new(0);

/// Sets libtorch's intra-op thread count for this thread and for every forward thread started
/// after. OpenMP's and MKL's thread counts are per-thread settings: a count set only on the thread
/// that starts the server leaves each new forward thread at OpenMP's default (one per host core),
/// measured as an extra OpenMP helper thread per model even at `--intra-op-threads 1`.
pub fn set_intra_op_threads(n: usize) {
    let n = n.clamp(1, i32::MAX as usize) as i32;
    INTRA_OP_THREADS.store(n, Ordering::Relaxed);
    tch::set_num_threads(n);
}

/// Applies the model's own count (its `intra_op_threads`, when not 0) or else
/// [`set_intra_op_threads`]'s to the calling forward thread.
fn apply_intra_op_threads(model: usize) {
    let n = match model {
        0 => INTRA_OP_THREADS.load(Ordering::Relaxed),
        n => n.min(i32::MAX as usize) as i32,
    };
    if n > 0 {
        tch::set_num_threads(n);
    }
}

/// Resolves a device choice against what libtorch actually sees.
pub fn resolve_device(choice: crate::device::DeviceChoice) -> Result<Device, String> {
    use crate::device::DeviceChoice;
    let available = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if available => Ok(Device::Cuda(0)),
        DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) if available && (n as i64) < count => Ok(Device::Cuda(n)),
        DeviceChoice::Cuda(n) => Err(format!(
            "device cuda:{n} was requested but libtorch sees {count} CUDA device(s) (CUDA available: {available}); use cpu or auto"
        )),
    }
}

/// Where a model version is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelState {
    Loading,
    Ready,
    Failed(String),
}

/// When a request stops being worth serving, and whose limit that is.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    /// True when the client's own `timeout` parameter set it (408), false for the server's (504).
    pub client: bool,
}

/// One served model version: its config, its state, and the queue into its batcher.
/// Dropping the last handle closes the queue; the batcher and threads finish what is queued, then exit.
pub struct Model {
    pub name: String,
    pub version: u64,
    pub config: Arc<ModelConfig>,
    pub device: Device,
    pub metrics: ModelMetrics,
    state: Arc<watch::Sender<ModelState>>,
    queue: batcher::Queue,
}

/// The batching policy of a model config (CLI overrides are already merged into it).
pub fn policy(config: &ModelConfig) -> batcher::Policy {
    let b = &config.batching;
    batcher::Policy {
        max_batch_rows: if b.dynamic {
            config.max_batch_size as u64
        } else {
            1
        },
        max_queue_delay: Duration::from_micros(b.max_queue_delay_us),
        preferred_batch_sizes: b.preferred_batch_sizes.clone(),
        max_queue_size: b.max_queue_size,
        priority_levels: b.priority_levels,
        instances: config.instance_count,
    }
}

impl Model {
    /// Starts the forward threads (which load and warm up the module in the background) and the
    /// batcher task. Must be called within a tokio runtime.
    pub fn start(
        name: &str,
        config: Arc<ModelConfig>,
        source: VersionSource,
        device: Device,
        metrics: ModelMetrics,
    ) -> std::io::Result<Arc<Model>> {
        let (to_threads, batches) = std::sync::mpsc::channel();
        let state = Arc::new(watch::Sender::new(ModelState::Loading));
        metrics.ready.set(0);
        let shared = Arc::new(worker::Shared {
            name: name.to_string(),
            version: source.version,
            model_path: source.model_path,
            config: config.clone(),
            device,
            metrics: metrics.clone(),
            state: state.clone(),
            batches: Mutex::new(batches),
            loading: std::sync::atomic::AtomicUsize::new(config.instance_count),
            started: Instant::now(),
        });
        for instance in 0..config.instance_count {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fwd-{name}-{}-{instance}", source.version))
                .spawn(move || worker::run(shared, instance))?;
        }
        let queue = batcher::spawn(
            policy(&config),
            worker::Pool(to_threads),
            metrics.pending.clone(),
        );
        Ok(Arc::new(Model {
            name: name.to_string(),
            version: source.version,
            config,
            device,
            metrics,
            state,
            queue,
        }))
    }

    pub fn state(&self) -> ModelState {
        self.state.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        self.state() == ModelState::Ready
    }

    /// Requests waiting in the batcher.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Resolves once loading has finished, successfully or not.
    pub async fn settled(&self) -> ModelState {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| *s != ModelState::Loading)
            .await
            .map(|s| s.clone());
        // The sender lives in `self`, so the channel cannot close while we wait.
        state.unwrap_or_else(|_| self.state())
    }

    /// Queues a request (its rows counted from the first input's batch dimension) and waits for
    /// its own output rows, at most until `deadline`. A full queue answers at once. If the caller
    /// goes away (client disconnected), the request is skipped, never run.
    pub async fn infer(
        &self,
        inputs: Vec<TensorData>,
        deadline: Option<Deadline>,
        priority: usize,
    ) -> Result<Vec<TensorData>, RuntimeError> {
        match self.state() {
            ModelState::Ready => {}
            ModelState::Loading => return Err(RuntimeError::NotReady("still loading".into())),
            ModelState::Failed(why) => return Err(RuntimeError::NotReady(why)),
        }
        let rows = if self.config.max_batch_size > 0 {
            inputs
                .first()
                .and_then(|t| t.shape.first())
                .copied()
                .unwrap_or(1)
        } else {
            1
        };
        let (reply, answer) = oneshot::channel();
        self.queue.push(batcher::Pending {
            inputs,
            rows,
            priority,
            enqueued: tokio::time::Instant::now(),
            deadline,
            reply,
        })?;
        let gone = || RuntimeError::NotReady("the forward threads have stopped".into());
        match deadline {
            None => answer.await.unwrap_or_else(|_| Err(gone())),
            Some(d) => match tokio::time::timeout_at(d.at, answer).await {
                Ok(result) => result.unwrap_or_else(|_| Err(gone())),
                Err(_) => Err(RuntimeError::DeadlineExceeded { client: d.client }),
            },
        }
    }
}
