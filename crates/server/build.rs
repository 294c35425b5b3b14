//! Link settings for libtorch that tch's own build cannot make for us.
//!
//! - An rpath to the libtorch that torch-sys linked, baked into every binary, test and example of this
//!   package, so `cargo run -p server` and `cargo test` start without `LD_LIBRARY_PATH`.
//! - `libtorch_cuda.so` kept as a dependency even though no symbol of it is referenced: the linker's
//!   `--as-needed` would otherwise drop it, libtorch would never register its CUDA backend, and
//!   `tch::Cuda::is_available()` would be false on a GPU node. `TORCHSHIP_CPU_ONLY=1` at build time
//!   leaves it out on purpose: the binary then needs none of CUDA's libraries (the CPU-only image).
//! - The AOTInductor bridge (`src/runtime/aoti/bridge.cpp`) compiled against the same libtorch, with
//!   torch-sys's C++ settings, and `libtorch.so` kept as a dependency: the kernels' libraries inside a
//!   `.pt2` package name it, and `dlopen` finds it only if the process has it loaded already.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys publishes the lib dir it linked against as `cargo:libtorch_lib`, which cargo hands to
    // packages that depend on it directly (`links = "tch"`).
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not report its libtorch lib dir (it does on Linux and macOS); the AOTInductor bridge needs libtorch's headers");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    bridge(Path::new(&lib));
    println!("cargo:rerun-if-env-changed=TORCHSHIP_CPU_ONLY");
    let cpu_only = std::env::var("TORCHSHIP_CPU_ONLY").is_ok_and(|v| v == "1");
    if !cpu_only && Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

fn bridge(lib: &Path) {
    let source = "src/runtime/aoti/bridge.cpp";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // torch-sys's own default; every torch wheel since 2.7 is built with the C++11 ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let include = lib.parent().unwrap_or(lib).join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        // libtorch's headers warn about themselves; the bridge's own code is small.
        .warnings(false)
        .file(source)
        .compile("torchship_aoti");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch,--as-needed");
}
