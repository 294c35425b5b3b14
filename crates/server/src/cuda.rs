//! CUDA device memory for the metrics, read with `cudaMemGetInfo` from the CUDA runtime that libtorch
//! has already loaded. tch has no memory API, and linking the CUDA runtime ourselves would tie the
//! binary to it; looking the symbols up at run time means CPU-only machines simply report nothing.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

type SetDevice = unsafe extern "C" fn(c_int) -> c_int;
type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;

struct Runtime {
    set_device: SetDevice,
    mem_get_info: MemGetInfo,
}

fn runtime() -> Option<&'static Runtime> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            // SAFETY: dlsym with RTLD_DEFAULT only searches the libraries already loaded; a symbol
            // found under these names is the CUDA runtime's function of the documented signature.
            unsafe {
                let set = libc::dlsym(libc::RTLD_DEFAULT, c"cudaSetDevice".as_ptr());
                let info = libc::dlsym(libc::RTLD_DEFAULT, c"cudaMemGetInfo".as_ptr());
                if set.is_null() || info.is_null() {
                    return None;
                }
                Some(Runtime {
                    set_device: std::mem::transmute::<*mut c_void, SetDevice>(set),
                    mem_get_info: std::mem::transmute::<*mut c_void, MemGetInfo>(info),
                })
            }
        })
        .as_ref()
}

/// `(free, total)` bytes of CUDA device `index`, or `None` without a CUDA runtime or device.
pub fn memory(index: usize) -> Option<(usize, usize)> {
    if !tch::Cuda::is_available() {
        return None;
    }
    let rt = runtime()?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: plain CUDA runtime calls with valid out-pointers; errors come back as non-zero codes.
    let ok = unsafe {
        (rt.set_device)(index as c_int) == 0 && (rt.mem_get_info)(&mut free, &mut total) == 0
    };
    ok.then_some((free, total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_nothing_without_a_gpu_and_sane_numbers_with_one() {
        match super::memory(0) {
            None => assert!(!tch::Cuda::is_available()),
            Some((free, total)) => assert!(free <= total && total > 0),
        }
    }
}
