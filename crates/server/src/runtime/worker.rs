//! The forward threads of one model version: each loads its own copy of the module, warms it up, then
//! runs the batches the batcher hands it until the model is dropped.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use tokio::sync::watch;

use super::batcher::{Backend, Batch, Pending};
use super::module::{first_line, Module};
use super::tensor::{self, batch_tensor, split_rows};
use super::{ModelState, RuntimeError, TensorData};
use crate::metrics::ModelMetrics;
use crate::repository::config::{Platform, WarmupData};
use crate::repository::ModelConfig;

/// What every instance thread of one model version shares.
pub(super) struct Shared {
    pub name: String,
    pub version: u64,
    pub model_path: PathBuf,
    pub config: Arc<ModelConfig>,
    pub device: Device,
    pub metrics: ModelMetrics,
    pub state: Arc<watch::Sender<ModelState>>,
    pub batches: Mutex<Receiver<Batch>>,
    /// Instances still loading; the last one to finish marks the version ready.
    pub loading: AtomicUsize,
    pub started: Instant,
}

/// The batcher's backend: hands batches to whichever instance thread is free.
pub(super) struct Pool(pub Sender<Batch>);

impl Backend for Pool {
    fn submit(&self, batch: Batch) {
        // If every thread is gone (load failed), the batch is dropped and its callers hear so.
        let _ = self.0.send(batch);
    }
}

pub(super) fn run(shared: Arc<Shared>, instance: usize) {
    super::apply_intra_op_threads(shared.config.intra_op_threads);
    let module = match load_and_warm_up(&shared) {
        Ok(m) => m,
        Err(why) => {
            tracing::error!(model = %shared.name, version = shared.version, instance, error = %why, "model failed to load");
            shared.state.send_replace(ModelState::Failed(why));
            return;
        }
    };
    if shared.loading.fetch_sub(1, Ordering::AcqRel) == 1 {
        let seconds = shared.started.elapsed().as_secs_f64();
        let ready = shared.state.send_if_modified(|s| {
            let was_loading = *s == ModelState::Loading;
            if was_loading {
                *s = ModelState::Ready;
            }
            was_loading
        });
        if ready {
            shared.metrics.load_duration.set(seconds);
            shared.metrics.ready.set(1);
            tracing::info!(model = %shared.name, version = shared.version, device = ?shared.device,
                instances = shared.config.instance_count, seconds, "model loaded and warmed up");
        }
    }
    loop {
        // The lock is held only while waiting for the next batch, never during a forward pass.
        let batch = match shared
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv()
        {
            Ok(batch) => batch,
            Err(_) => break, // the batcher is gone: the model was unloaded
        };
        serve(&shared, &module, batch);
    }
    tracing::debug!(model = %shared.name, version = shared.version, instance, "forward thread exits");
}

fn serve(shared: &Shared, module: &Module, mut batch: Batch) {
    let m = &shared.metrics;
    let now = tokio::time::Instant::now();
    let mut live: Vec<Pending> = Vec::with_capacity(batch.requests.len());
    for p in batch.requests.drain(..) {
        m.queue_duration.observe((now - p.enqueued).as_secs_f64());
        if p.reply.is_closed() {
            continue; // the client went away: no libtorch time for it
        }
        if let Some(d) = p.deadline.filter(|d| d.at <= now) {
            let _ = p
                .reply
                .send(Err(RuntimeError::DeadlineExceeded { client: d.client }));
            continue;
        }
        live.push(p);
    }
    if live.is_empty() {
        return;
    }
    let rows: Vec<u64> = live.iter().map(|p| p.rows).collect();
    let total: u64 = rows.iter().sum();
    m.inflight.inc();
    let result = guarded(|| forward(shared, module, &live));
    batch.release();
    m.inflight.dec();
    m.executions.inc();
    m.rows.inc_by(total);
    m.batch_size.observe(total as f64);
    let per_request = result.and_then(|(outputs, phases)| {
        m.compute_input.observe(phases[0]);
        m.compute_forward.observe(phases[1]);
        m.compute_output.observe(phases[2]);
        m.stats.pass(total, phases);
        if shared.config.max_batch_size == 0 {
            Ok(vec![outputs]) // unbatched: one request, outputs as they are
        } else {
            split_rows(outputs, &rows)
        }
    });
    match per_request {
        Ok(outs) => {
            for (p, out) in live.into_iter().zip(outs) {
                let _ = p.reply.send(Ok(out));
            }
        }
        Err(e) => {
            for p in live {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs `f`, turning a panic inside tch/libtorch into an error so the thread keeps serving.
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(RuntimeError::Panicked(msg))
    })
}

fn load_and_warm_up(shared: &Shared) -> Result<Module, String> {
    let path = shared.model_path.display();
    if !shared.model_path.is_file() {
        return Err(format!("{path}: file not found"));
    }
    let module = Module::load(&shared.config, &shared.model_path, shared.device)
        .map_err(|e| format!("{path}: {e}"))?;
    if shared.config.platform == Platform::Aoti {
        probe_batches(shared, &module).map_err(|e| format!("{path}: {e}"))?;
    }
    let rows = shared.config.warmup.batch_size;
    for _ in 0..shared.config.warmup.runs {
        run_rows(shared, &module, rows)
            .map_err(|e| format!("{path}: warm-up failed: {}", first_line(&e.to_string())))?;
    }
    Ok(module)
}

/// One forward pass over generated inputs with `rows` in the batch dimension.
fn run_rows(shared: &Shared, module: &Module, rows: usize) -> Result<(), RuntimeError> {
    // tch's tensor constructors panic on error; `guarded` turns that into an error.
    let inputs = guarded(|| Ok(warmup_inputs(&shared.config, rows)))?;
    guarded(|| {
        let args = inputs
            .iter()
            .map(|t| tensor::to_torch(t, shared.device))
            .collect::<Result<Vec<_>, _>>()?;
        run_module(shared, module, args)
    })
    .map(drop)
}

/// An AOTInductor package is compiled for shapes: a static batch dimension takes one size only, a
/// dynamic one has bounds. So the batch sizes the batcher can form, 1 and `max_batch_size`, are
/// run once each at load (with AOTInductor's input checks on), and a package that cannot take
/// them is refused here rather than failing requests later. A batch of 2 tells a static dimension
/// from too low an upper bound.
fn probe_batches(shared: &Shared, module: &Module) -> Result<(), String> {
    let max = shared.config.max_batch_size;
    let first = if max == 0 {
        shared.config.warmup.batch_size
    } else {
        1
    };
    // Only libtorch's errors are the package refusing a shape; an output that disagrees with
    // config.toml says so itself.
    let refused = |rows| match run_rows(shared, module, rows) {
        Ok(()) => Ok(None),
        Err(RuntimeError::Torch(e)) => Ok(Some(first_line(&e))),
        Err(other) => Err(first_line(&other.to_string())),
    };
    if let Some(e) = refused(first)? {
        let hint = if e.contains("too small at 0") {
            "its batch dimension's lower bound is above 1: torch.export makes it 2 even for \
             Dim(min=1) unless the export runs under \
             torch.fx.experimental._config.patch(backed_size_oblivious=True)"
        } else {
            "its inputs' datatypes or shapes differ from config.toml, or its batch dimension is \
             static at another size"
        };
        return Err(format!(
            "the package refuses the inputs config.toml declares ({}): {e}; {hint}",
            shapes(&shared.config, first)
        ));
    }
    if max <= 1 {
        return Ok(());
    }
    let Some(e) = refused(max)? else {
        return Ok(());
    };
    let dim = format!("torch.export.Dim(\"batch\", min=1, max={max})");
    if refused(2)?.is_some() {
        return Err(format!(
            "the package's batch dimension is static (it takes a batch of 1 only) but \
             max_batch_size is {max}: export it with a dynamic batch dimension ({dim} in \
             dynamic_shapes) or set max_batch_size = 0 ({e})"
        ));
    }
    Err(format!(
        "the package takes batches of 1 and 2 but not of max_batch_size = {max} ({e}): export \
         it with {dim} or lower max_batch_size"
    ))
}

/// `FP32 [1, 64], INT64 [1, 3]`: what a probe sent.
fn shapes(config: &ModelConfig, rows: usize) -> String {
    warmup_inputs_shapes(config, rows)
        .into_iter()
        .map(|(d, s)| format!("{d} {s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each input's datatype and shape for a generated batch: the batch dimension `rows`, other `-1`
/// dimensions the warm-up batch size.
fn warmup_inputs_shapes(config: &ModelConfig, rows: usize) -> Vec<(protocol::Datatype, Vec<u64>)> {
    let free = config.warmup.batch_size as u64;
    config
        .inputs
        .iter()
        .map(|spec| {
            let shape = spec
                .shape
                .iter()
                .enumerate()
                .map(|(i, &d)| match d {
                    _ if i == 0 && config.max_batch_size > 0 => rows as u64,
                    d if d < 0 => free,
                    d => d as u64,
                })
                .collect();
            (spec.datatype, shape)
        })
        .collect()
}

/// One batch of generated inputs per the `[warmup]` config's data, `rows` rows.
fn warmup_inputs(config: &ModelConfig, rows: usize) -> Vec<TensorData> {
    warmup_inputs_shapes(config, rows)
        .into_iter()
        .map(|(datatype, shape)| {
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let n = protocol::element_count(&shape).unwrap_or(0);
            let kind = super::tensor::kind_of(datatype).unwrap_or(Kind::Float);
            let t = match config.warmup.data {
                WarmupData::Zeros => Tensor::zeros(dims, (kind, Device::Cpu)),
                WarmupData::Random => {
                    tch::manual_seed(0);
                    if matches!(
                        kind,
                        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
                    ) {
                        Tensor::rand(dims, (kind, Device::Cpu))
                    } else {
                        Tensor::randint(2, dims, (Kind::Int64, Device::Cpu)).to_kind(kind)
                    }
                }
            };
            let mut bytes = vec![0u8; n * datatype.size().unwrap_or(0)];
            t.copy_data_u8(&mut bytes, n);
            TensorData {
                datatype,
                shape,
                bytes: bytes.into(),
            }
        })
        .collect()
}

/// Seconds spent building inputs, in forward, and copying outputs back.
type Phases = [f64; 3];

/// One forward pass over the requests of a batch, timed by phase.
fn forward(
    shared: &Shared,
    module: &Module,
    requests: &[Pending],
) -> Result<(Vec<TensorData>, Phases), RuntimeError> {
    let t0 = Instant::now();
    let args = (0..shared.config.inputs.len())
        .map(|j| {
            let parts: Vec<&TensorData> = requests.iter().map(|p| &p.inputs[j]).collect();
            batch_tensor(&parts, shared.device)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let t1 = Instant::now();
    let (outputs, copy_back) = run_module_timed(shared, module, args)?;
    let t3 = Instant::now();
    let phases = [
        (t1 - t0).as_secs_f64(),
        (t3 - t1).as_secs_f64() - copy_back,
        copy_back,
    ];
    Ok((outputs, phases))
}

fn run_module(
    shared: &Shared,
    module: &Module,
    args: Vec<Tensor>,
) -> Result<Vec<TensorData>, RuntimeError> {
    run_module_timed(shared, module, args).map(|(outputs, _)| outputs)
}

/// Forward under no-grad; outputs checked against the config and copied to the host. Also returns
/// the seconds spent copying outputs back.
fn run_module_timed(
    shared: &Shared,
    module: &Module,
    args: Vec<Tensor>,
) -> Result<(Vec<TensorData>, f64), RuntimeError> {
    let _no_grad = tch::no_grad_guard();
    let tensors = module.forward(args)?;
    let config = &shared.config;
    if tensors.len() != config.outputs.len() {
        return Err(RuntimeError::OutputMismatch(format!(
            "the model returned {} tensors, the config declares {} outputs",
            tensors.len(),
            config.outputs.len()
        )));
    }
    let t = Instant::now();
    let outputs = tensors
        .iter()
        .zip(&config.outputs)
        .map(|(t, spec)| {
            let data = tensor::from_torch(t)?;
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
        .collect::<Result<Vec<_>, _>>()?;
    Ok((outputs, t.elapsed().as_secs_f64()))
}
