//! Link settings for libtorch that tch's own build cannot make for us.
//!
//! - An rpath to the libtorch that torch-sys linked, baked into every binary, test and example of this
//!   package, so `cargo run -p server` and `cargo test` start without `LD_LIBRARY_PATH`.
//! - `libtorch_cuda.so` kept as a dependency even though no symbol of it is referenced: the linker's
//!   `--as-needed` would otherwise drop it, libtorch would never register its CUDA backend, and
//!   `tch::Cuda::is_available()` would be false on a GPU node. `TORCHSHIP_CPU_ONLY=1` at build time
//!   leaves it out on purpose: the binary then needs none of CUDA's libraries (the CPU-only image).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys publishes the lib dir it linked against as `cargo:libtorch_lib`, which cargo hands to
    // packages that depend on it directly (`links = "tch"`).
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch lib dir; binaries will need LD_LIBRARY_PATH");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rerun-if-env-changed=TORCHSHIP_CPU_ONLY");
    let cpu_only = std::env::var("TORCHSHIP_CPU_ONLY").is_ok_and(|v| v == "1");
    if !cpu_only && Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
