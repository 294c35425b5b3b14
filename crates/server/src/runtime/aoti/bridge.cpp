// The C ABI between torchship's runtime (runtime/aoti/ffi.rs) and libtorch's AOTInductor package
// loader, `torch::inductor::AOTIModelPackageLoader`, which tch has no binding for.
//
// Rules of this boundary:
// - No C++ exception crosses it: every entry point catches everything and reports the message
//   through the caller's `on_error` callback, returning false / null.
// - Tensors cross as `at::Tensor*`, the same pointers tch's `Tensor` wraps (torch-sys's C_tensor):
//   inputs are borrowed, outputs are new heap tensors that the Rust side owns and frees as tch does
//   (`delete`). Only the handles are new; no tensor data is copied.
// - Strings and pairs are handed to callbacks as (pointer, length), valid only during the call.

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

// AOTInductor's generated code checks every input's dtype, sizes (static values and the dynamic
// dimensions' bounds), strides and device only when this variable is set; without it a tensor of
// another shape runs into the compiled kernels unchecked. The server's codec checks requests
// against config.toml, and the load-time probes check config.toml against the package with these
// checks on, so both halves hold. Set before main, while the process has one thread (setenv is not
// safe beside a concurrent getenv), and over any value the environment gave: a model server does
// not run kernels unchecked. Each package reads it once, at its first run.
const int kCheckInputs = setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", 1);

using ErrorFn = void (*)(void* ctx, const char* message, size_t len);

template <typename F>
bool guarded(void* ctx, ErrorFn on_error, F&& body) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    std::string message = e.what();
    on_error(ctx, message.data(), message.size());
  } catch (...) {
    static const std::string unknown = "unknown C++ exception";
    on_error(ctx, unknown.data(), unknown.size());
  }
  return false;
}

}  // namespace

extern "C" {

using PairFn = void (*)(void* ctx, const char* key, size_t key_len, const char* value,
                        size_t value_len);
using TensorFn = void (*)(void* ctx, at::Tensor* tensor);

// The package's metadata (AOTI_DEVICE_KEY, AOTI_CPU_ISA, the exporter's own keys) without loading
// its kernels, so a package for another device is refused before its library is opened.
bool torchship_aoti_metadata(const char* path, void* ctx, PairFn on_pair, ErrorFn on_error) {
  return guarded(ctx, on_error, [&] {
    auto metadata =
        torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
    for (const auto& [key, value] : metadata) {
      on_pair(ctx, key.data(), key.size(), value.data(), value.size());
    }
  });
}

// Extracts the package and opens its kernels for `device_index` (-1: the package's device, index 0
// for CUDA). Returns null on failure.
void* torchship_aoti_load(const char* path, int32_t device_index, void* ctx, ErrorFn on_error) {
  torch::inductor::AOTIModelPackageLoader* loader = nullptr;
  guarded(ctx, on_error, [&] {
    loader = new torch::inductor::AOTIModelPackageLoader(
        path, "model", /*run_single_threaded=*/false, /*num_runners=*/1,
        static_cast<c10::DeviceIndex>(device_index));
  });
  return loader;
}

void torchship_aoti_free(void* package) {
  delete static_cast<torch::inductor::AOTIModelPackageLoader*>(package);
}

// The call spec: the pytree specs of the inputs ("in") and outputs ("out"), JSON.
bool torchship_aoti_call_spec(void* package, void* ctx, PairFn on_pair, ErrorFn on_error) {
  return guarded(ctx, on_error, [&] {
    auto spec = static_cast<torch::inductor::AOTIModelPackageLoader*>(package)->get_call_spec();
    static const std::string names[] = {"in", "out"};
    for (size_t i = 0; i < spec.size() && i < 2; ++i) {
      on_pair(ctx, names[i].data(), names[i].size(), spec[i].data(), spec[i].size());
    }
  });
}

// One forward pass. `inputs` are borrowed; each output is handed over as a new `at::Tensor*`.
bool torchship_aoti_run(void* package, at::Tensor* const* inputs, size_t n_inputs, void* ctx,
                        TensorFn on_output, ErrorFn on_error) {
  return guarded(ctx, on_error, [&] {
    std::vector<at::Tensor> args;
    args.reserve(n_inputs);
    for (size_t i = 0; i < n_inputs; ++i) {
      args.push_back(*inputs[i]);
    }
    auto outputs = static_cast<torch::inductor::AOTIModelPackageLoader*>(package)->run(args);
    for (auto& output : outputs) {
      on_output(ctx, new at::Tensor(std::move(output)));
    }
  });
}

}  // extern "C"
