//! The libtorch side: each model runs on its own OS thread (never a tokio worker), fed by a bounded
//! queue; callers wait on a oneshot reply. The thread owns the `CModule`, loads and warms it up, and
//! only then marks the model ready, so a slow load never blocks the HTTP server or its liveness.

pub mod tensor;

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tch::{CModule, Device, IValue, Tensor};
use tokio::sync::{oneshot, watch};

use crate::repository::{ModelConfig, ModelSource};
pub use tensor::TensorData;

/// Why an inference could not be served by the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model's queue holds `max_queue_size` requests already.
    #[error("the model's queue is full ({0} waiting); retry later")]
    QueueFull(usize),
    /// The model is still loading, failed to load, or was unloaded.
    #[error("model is not ready: {0}")]
    NotReady(String),
    /// libtorch reported an error (during forward, or while building tensors).
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
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

impl RuntimeError {
    /// Stable label for JSON errors and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeError::QueueFull(_) => "queue_full",
            RuntimeError::NotReady(_) => "model_not_ready",
            RuntimeError::Torch(_) => "inference_failed",
            RuntimeError::Tensor(_) => "tensor_error",
            RuntimeError::OutputMismatch(_) => "output_mismatch",
            RuntimeError::Panicked(_) => "inference_panicked",
        }
    }
}

/// Where a model is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelState {
    Loading,
    Ready,
    Failed(String),
}

type Reply = oneshot::Sender<Result<Vec<TensorData>, RuntimeError>>;

struct Job {
    inputs: Vec<TensorData>,
    reply: Reply,
}

/// A model being served: its config, its state, and the queue into its forward thread.
/// Dropping the last handle closes the queue; the thread then exits and frees the module.
pub struct Model {
    pub name: String,
    pub version: u64,
    pub config: ModelConfig,
    pub device: Device,
    state: Arc<watch::Sender<ModelState>>,
    queue: SyncSender<Job>,
}

impl Model {
    /// Starts the forward thread, which loads and warms up the module in the background.
    pub fn start(source: ModelSource, device: Device) -> std::io::Result<Arc<Model>> {
        let (queue, jobs) = sync_channel(source.config.batching.max_queue_size);
        let state = Arc::new(watch::Sender::new(ModelState::Loading));
        let model = Arc::new(Model {
            name: source.name.clone(),
            version: source.version,
            config: source.config.clone(),
            device,
            state: state.clone(),
            queue,
        });
        std::thread::Builder::new()
            .name(format!("forward-{}", source.name))
            .spawn(move || forward_thread(source, device, state, jobs))?;
        Ok(model)
    }

    pub fn state(&self) -> ModelState {
        self.state.borrow().clone()
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

    pub fn is_ready(&self) -> bool {
        self.state() == ModelState::Ready
    }

    /// Queues one forward pass and waits for it. A full queue answers at once.
    pub async fn infer(&self, inputs: Vec<TensorData>) -> Result<Vec<TensorData>, RuntimeError> {
        match self.state() {
            ModelState::Ready => {}
            ModelState::Loading => return Err(RuntimeError::NotReady("still loading".into())),
            ModelState::Failed(why) => return Err(RuntimeError::NotReady(why)),
        }
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { inputs, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(RuntimeError::QueueFull(self.config.batching.max_queue_size))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(RuntimeError::NotReady(
                    "the forward thread has stopped".into(),
                ))
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(RuntimeError::NotReady(
                "the forward thread has stopped".into(),
            ))
        })
    }
}

fn set(state: &watch::Sender<ModelState>, s: ModelState) {
    state.send_replace(s);
}

fn forward_thread(
    source: ModelSource,
    device: Device,
    state: Arc<watch::Sender<ModelState>>,
    jobs: Receiver<Job>,
) {
    let started = Instant::now();
    let module = match load_and_warm_up(&source, device) {
        Ok(m) => m,
        Err(why) => {
            tracing::error!(model = %source.name, version = source.version, error = %why, "model failed to load");
            set(&state, ModelState::Failed(why));
            return;
        }
    };
    tracing::info!(
        model = %source.name,
        version = source.version,
        ?device,
        seconds = started.elapsed().as_secs_f64(),
        "model loaded and warmed up"
    );
    set(&state, ModelState::Ready);
    while let Ok(job) = jobs.recv() {
        let result = guarded(|| forward(&module, &source.config, &job.inputs, device));
        // The caller may have gone away (client disconnected); nothing to do then.
        let _ = job.reply.send(result);
    }
}

/// Runs `f`, turning a panic inside tch/libtorch into an error so the thread keeps serving.
fn guarded<T>(f: impl FnOnce() -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(RuntimeError::Panicked(msg))
    })
}

fn load_and_warm_up(source: &ModelSource, device: Device) -> Result<CModule, String> {
    let path = source.model_path.display();
    let mut module = guarded(|| Ok(CModule::load_on_device(&source.model_path, device)?))
        .map_err(|e| format!("{path}: cannot load TorchScript: {e}"))?;
    module.set_eval();
    // One row of zeros per input: proves the config matches the module before any client sees it.
    let warm: Vec<TensorData> = source
        .config
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<u64> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as u64 })
                .collect();
            let n = protocol::element_count(&shape).unwrap_or(0);
            TensorData {
                datatype: spec.datatype,
                bytes: vec![0; n * spec.datatype.size().unwrap_or(0)],
                shape,
            }
        })
        .collect();
    guarded(|| forward(&module, &source.config, &warm, device))
        .map_err(|e| format!("{path}: warm-up with zeros failed: {e}"))?;
    Ok(module)
}

/// One forward pass under no-grad; outputs are checked against the config and copied to the host.
fn forward(
    module: &CModule,
    config: &ModelConfig,
    inputs: &[TensorData],
    device: Device,
) -> Result<Vec<TensorData>, RuntimeError> {
    let _no_grad = tch::no_grad_guard();
    let args = inputs
        .iter()
        .map(|t| t.to_tensor(device).map(IValue::Tensor))
        .collect::<Result<Vec<_>, _>>()?;
    let out = module.forward_is(&args)?;
    let tensors = flatten(out)?;
    if tensors.len() != config.outputs.len() {
        return Err(RuntimeError::OutputMismatch(format!(
            "the model returned {} tensors, the config declares {} outputs",
            tensors.len(),
            config.outputs.len()
        )));
    }
    tensors
        .iter()
        .zip(&config.outputs)
        .map(|(t, spec)| {
            let data = TensorData::from_tensor(t)?;
            let shape_ok = data.shape.len() == spec.shape.len()
                && data
                    .shape
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&got, &want)| want < 0 || got == want as u64);
            if data.datatype != spec.datatype || !shape_ok {
                return Err(RuntimeError::OutputMismatch(format!(
                    "output '{}' is {} {:?}, the config declares {} {:?}",
                    spec.name, data.datatype, data.shape, spec.datatype, spec.shape
                )));
            }
            Ok(data)
        })
        .collect()
}

/// A module may return one tensor, or a tuple/list of them (multi-output models).
fn flatten(out: IValue) -> Result<Vec<Tensor>, RuntimeError> {
    match out {
        IValue::Tensor(t) => Ok(vec![t]),
        IValue::TensorList(ts) => Ok(ts),
        IValue::Tuple(items) | IValue::GenericList(items) => items
            .into_iter()
            .map(|iv| match iv {
                IValue::Tensor(t) => Ok(t),
                _ => Err(RuntimeError::OutputMismatch(
                    "the model returned a non-tensor element".into(),
                )),
            })
            .collect(),
        _ => Err(RuntimeError::OutputMismatch(
            "the model returned neither a tensor nor a tuple of tensors".into(),
        )),
    }
}
