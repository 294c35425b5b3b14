//! One loaded copy of a model version, whichever platform it is: a TorchScript `CModule` or an
//! AOTInductor [`Package`](super::aoti::Package). Both take a list of tensors and give back a list;
//! batching, warm-up and the output checks around them are the worker's and the same for both.

use std::path::Path;

use tch::{CModule, Device, IValue, Tensor};

use super::aoti::{self, checks};
use super::RuntimeError;
use crate::repository::config::Platform;
use crate::repository::ModelConfig;

/// One copy of a model version, loaded for its platform.
pub enum Module {
    TorchScript(CModule),
    Aoti(aoti::Package),
}

impl Module {
    /// Loads the version's file for `device`. The message says what is wrong; the caller names the
    /// file.
    pub fn load(config: &ModelConfig, path: &Path, device: Device) -> Result<Module, String> {
        match config.platform {
            Platform::TorchScript => {
                let mut module =
                    super::worker::guarded(|| Ok(CModule::load_on_device(path, device)?)).map_err(
                        |e| format!("cannot load TorchScript: {}", first_line(&e.to_string())),
                    )?;
                module.set_eval();
                Ok(Module::TorchScript(module))
            }
            Platform::Aoti => load_package(config, path, device).map(Module::Aoti),
        }
    }

    /// One forward pass (the caller holds a no-grad guard).
    pub fn forward(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        match self {
            Module::TorchScript(m) => {
                let args: Vec<IValue> = inputs.into_iter().map(IValue::Tensor).collect();
                flatten(m.forward_is(&args)?)
            }
            Module::Aoti(p) => p
                .run(&inputs)
                .map_err(|e| RuntimeError::Torch(first_line(&e))),
        }
    }
}

/// The package's device and instruction set are checked from its metadata before its kernels are
/// opened (a CUDA package on a CPU-only process, or AVX-512 kernels on a CPU without it, would
/// otherwise fail obscurely or die of SIGILL); its input and output counts after.
fn load_package(
    config: &ModelConfig,
    path: &Path,
    device: Device,
) -> Result<aoti::Package, String> {
    let unreadable = |e: String| format!("not a readable AOTInductor package: {}", first_line(&e));
    let metadata = aoti::metadata(path).map_err(unreadable)?;
    checks::device(&metadata, device)?;
    if !device.is_cuda() {
        let flags = checks::host_cpu_flags();
        checks::cpu_isa(
            &metadata,
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
    }
    let package = aoti::Package::load(path, device)
        .map_err(|e| format!("cannot load the AOTInductor package: {}", first_line(&e)))?;
    let (inputs, outputs) = package.call_spec()?;
    checks::arity(
        (&inputs, &outputs),
        config.inputs.len(),
        config.outputs.len(),
    )?;
    Ok(package)
}

/// libtorch's messages carry a C++ backtrace after the first line.
pub(super) fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

/// A TorchScript module may return one tensor, or a tuple/list of them (multi-output models).
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
