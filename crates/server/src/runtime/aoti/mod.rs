//! AOTInductor packages (`platform = "pytorch_aoti"`, `<version>/model.pt2`): what
//! `torch._inductor.aoti_compile_and_package` writes, loaded through libtorch's
//! `AOTIModelPackageLoader` by a small C++ bridge (`bridge.cpp`, compiled by the build script against
//! the libtorch torch-sys links), since tch has no binding for it.
//!
//! - [`Package`]: load for a device, read the call spec, run tensors to tensors. Errors come back as
//!   values: the bridge catches every C++ exception. Tensors cross as the `at::Tensor` pointers tch
//!   wraps; nothing is copied.
//! - [`checks`]: what is checked before and after the kernels are opened: the package's device and
//!   CPU instruction set against this process, its input count against config.toml.
//! - [`extracted`]: the loader's unpacked copy of a CPU package, removed once it is loaded.
//!
//! The bridge turns on AOTInductor's own input checks (`AOTI_RUNTIME_CHECK_INPUTS=1`, before
//! `main`): every run checks dtypes, static sizes, dynamic dimensions' bounds and strides, so a
//! tensor the package was not compiled for is an error, never an out-of-bounds read.

pub mod checks;
pub mod extracted;

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use tch::{Device, Tensor};
use torch_sys::C_tensor;

type ErrorFn = extern "C" fn(ctx: *mut c_void, message: *const c_char, len: usize);
type PairFn = extern "C" fn(*mut c_void, *const c_char, usize, *const c_char, usize);
type TensorFn = extern "C" fn(ctx: *mut c_void, tensor: *mut C_tensor);

extern "C" {
    fn torchship_aoti_metadata(
        path: *const c_char,
        ctx: *mut c_void,
        on_pair: PairFn,
        on_error: ErrorFn,
    ) -> bool;
    fn torchship_aoti_load(
        path: *const c_char,
        device_index: i32,
        ctx: *mut c_void,
        on_error: ErrorFn,
    ) -> *mut c_void;
    fn torchship_aoti_free(package: *mut c_void);
    fn torchship_aoti_call_spec(
        package: *mut c_void,
        ctx: *mut c_void,
        on_pair: PairFn,
        on_error: ErrorFn,
    ) -> bool;
    fn torchship_aoti_run(
        package: *mut c_void,
        inputs: *const *mut C_tensor,
        n_inputs: usize,
        ctx: *mut c_void,
        on_output: TensorFn,
        on_error: ErrorFn,
    ) -> bool;
}

/// What the bridge's callbacks collect during one call. The callbacks only copy into it: a panic
/// there would abort the process (it cannot unwind through C++).
#[derive(Default)]
struct Sink {
    error: Option<String>,
    pairs: Vec<(String, String)>,
    tensors: Vec<Tensor>,
}

impl Sink {
    fn ctx(&mut self) -> *mut c_void {
        (self as *mut Sink).cast()
    }

    /// The bridge's answer: `ok` with what was collected, or the C++ exception's message.
    fn finish(self, ok: bool) -> Result<Sink, String> {
        match (ok, self.error.clone()) {
            (true, None) => Ok(self),
            (_, Some(e)) => Err(e),
            (false, None) => Err("the AOTInductor bridge failed without a message".into()),
        }
    }
}

fn text(ptr: *const c_char, len: usize) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the bridge passes a pointer and length of a std::string alive during the call.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    String::from_utf8_lossy(bytes).into_owned()
}

extern "C" fn on_error(ctx: *mut c_void, message: *const c_char, len: usize) {
    // SAFETY: ctx is the `Sink` the caller passed for this call, exclusively borrowed by it.
    let sink = unsafe { &mut *ctx.cast::<Sink>() };
    sink.error = Some(text(message, len));
}

extern "C" fn on_pair(ctx: *mut c_void, k: *const c_char, kl: usize, v: *const c_char, vl: usize) {
    // SAFETY: as in `on_error`.
    let sink = unsafe { &mut *ctx.cast::<Sink>() };
    sink.pairs.push((text(k, kl), text(v, vl)));
}

extern "C" fn on_output(ctx: *mut c_void, tensor: *mut C_tensor) {
    // SAFETY: as in `on_error`; the tensor is a new `at::Tensor*` the bridge hands over, freed by
    // tch's `Drop` exactly as tensors tch creates itself.
    let sink = unsafe { &mut *ctx.cast::<Sink>() };
    sink.tensors.push(unsafe { Tensor::from_ptr(tensor) });
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: the path contains a NUL byte", path.display()))
}

/// The package's metadata without opening its kernels: `AOTI_DEVICE_KEY`, `AOTI_CPU_ISA`, and
/// whatever the exporter put in `aot_inductor.metadata`.
pub fn metadata(path: &Path) -> Result<HashMap<String, String>, String> {
    let path = c_path(path)?;
    let mut sink = Sink::default();
    // SAFETY: the path is NUL-terminated and the sink outlives the call.
    let ok = extracted::one_at_a_time(|| unsafe {
        torchship_aoti_metadata(path.as_ptr(), sink.ctx(), on_pair, on_error)
    });
    Ok(sink.finish(ok)?.pairs.into_iter().collect())
}

/// One loaded package: its own extracted copy of the kernels and weights, owned by the forward
/// thread that loaded it (not `Send`: it never leaves that thread).
pub struct Package {
    raw: NonNull<c_void>,
}

impl Package {
    /// Extracts the package and opens its kernels; CUDA packages on `device`'s index.
    pub fn load(path: &Path, device: Device) -> Result<Package, String> {
        let index = match device {
            Device::Cuda(n) => i32::try_from(n).map_err(|_| format!("CUDA index {n}"))?,
            _ => -1,
        };
        let path = c_path(path)?;
        extracted::load_then_remove(!device.is_cuda(), || {
            let mut sink = Sink::default();
            // SAFETY: as in `metadata`; the returned pointer is owned by the new `Package`.
            let raw = unsafe { torchship_aoti_load(path.as_ptr(), index, sink.ctx(), on_error) };
            match NonNull::new(raw) {
                Some(raw) => Ok(Package { raw }),
                None => Err(sink.finish(false).err().unwrap_or_default()),
            }
        })
    }

    /// The pytree specs (JSON) of the inputs and the outputs.
    pub fn call_spec(&self) -> Result<(String, String), String> {
        let mut sink = Sink::default();
        // SAFETY: `raw` is a live loader; the sink outlives the call.
        let ok =
            unsafe { torchship_aoti_call_spec(self.raw.as_ptr(), sink.ctx(), on_pair, on_error) };
        let mut spec: HashMap<String, String> = sink.finish(ok)?.pairs.into_iter().collect();
        match (spec.remove("in"), spec.remove("out")) {
            (Some(i), Some(o)) => Ok((i, o)),
            _ => Err("the package has no call spec".into()),
        }
    }

    /// One forward pass; the inputs are borrowed, the outputs are new tensors.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let ptrs: Vec<*mut C_tensor> = inputs.iter().map(|t| t.as_ptr().cast_mut()).collect();
        let mut sink = Sink::default();
        // SAFETY: the input pointers stay valid (borrowed from `inputs`) for the call, which only
        // reads them; outputs are handed over one by one to `on_output`.
        let ok = unsafe {
            torchship_aoti_run(
                self.raw.as_ptr(),
                ptrs.as_ptr(),
                ptrs.len(),
                sink.ctx(),
                on_output,
                on_error,
            )
        };
        Ok(sink.finish(ok)?.tensors)
    }
}

impl Drop for Package {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `torchship_aoti_load` and is freed once, here.
        unsafe { torchship_aoti_free(self.raw.as_ptr()) }
    }
}
