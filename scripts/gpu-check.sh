#!/usr/bin/env bash
# The GPU check: proves the CUDA path on a real GPU in one short run (see BENCHMARKS.md).
#
#   scripts/gpu-check.sh build        here: builds what travels, rehearses it on CPU, prints the command
#   scripts/gpu-check.sh run [ARGS]   there (or here): the check itself, scripts/gpu_check.py
#
# The GPU machine has no Rust toolchain and no network; its Python has torch 2.11.0 (cu130). tch 0.26
# (ours) expects libtorch 2.13, tch 0.24 expects 2.11. So `build` makes a scratch copy of the workspace
# under target/gpu-check/ws, switches it to tch/torch-sys 0.24, and builds the server there against
# PyPI's torch==2.11.0 (its own venv, target/gpu-check/venv); the main build is untouched. The server's
# code builds unchanged on tch 0.24 (if that ever stops being true, the difference goes behind a small
# cfg shim in crates/server, not into a fork). The load tester does not link libtorch: it is the main
# workspace's release build. What travels (target/gpu-check/stage, a few MiB: stripped binaries and
# the small digits weights; mlp is exported there, with the machine's torch) is carried with the
# working tree. `build` ends by running the check here on CPU against the 2.11 libraries.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gc="$root/target/gpu-check"
stage="$gc/stage"
TORCH_VERSION=2.11.0
TCH_VERSION=0.24
# The gRPC check's client, as the main venv has it (scripts/setup.sh), for the GPU machine's python.
TRITONCLIENT_VERSION=2.73.0
RAPIDJSON_VERSION=1.25
GPU_PYTHON=3.12

say() { printf 'gpu-check: %s\n' "$*" >&2; }

build() {
    "$root/scripts/setup.sh"
    mkdir -p "$gc"
    local venv="$gc/venv"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
        say "installing torch==$TORCH_VERSION into $venv (several GB, a few minutes)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --disable-pip-version-check -q "torch==$TORCH_VERSION" numpy
    fi
    "$venv/bin/pip" install --disable-pip-version-check -q "tritonclient[grpc]==$TRITONCLIENT_VERSION"
    local torch_dir
    torch_dir=$("$venv/bin/python" -c "import os, torch; print(os.path.dirname(torch.__file__))")

    say "scratch workspace $gc/ws with tch $TCH_VERSION"
    local ws="$gc/ws"
    mkdir -p "$ws"
    # The tracked and untracked-not-ignored files, as they are now.
    (cd "$root" && git ls-files -co --exclude-standard -z | grep -zE '^(Cargo\.(toml|lock)|crates/|loadtest/)' |
        tar --null -T - -cf -) | (cd "$ws" && tar -xf -)
    sed -i -E "s/^tch = \"[0-9.]+\"/tch = \"$TCH_VERSION\"/; s/^torch-sys = \"[0-9.]+\"/torch-sys = \"$TCH_VERSION\"/" "$ws/Cargo.toml"
    grep -q "^tch = \"$TCH_VERSION\"" "$ws/Cargo.toml" || { say "could not switch tch in $ws/Cargo.toml"; exit 1; }
    (cd "$ws" && cargo update -q -p tch -p torch-sys)
    say "building the server against libtorch $TORCH_VERSION"
    (cd "$ws" && LIBTORCH="$torch_dir" CARGO_TARGET_DIR="$gc/target" cargo build --release -p server)
    say "building the load tester (main workspace)"
    (cd "$root" && cargo build --release -p loadtest)

    rm -rf "$stage"
    mkdir -p "$stage/bin" "$stage/models"
    strip --strip-debug -o "$stage/bin/server" "$gc/target/release/server"
    strip --strip-debug -o "$stage/bin/loadtest" "$root/target/release/loadtest"
    cp -r "$root/models/digits" "$stage/models/"
    rm -f "$stage/models/digits/heldout.json"
    say "tritonclient wheels for the GPU machine's python $GPU_PYTHON (it has grpcio, protobuf, numpy)"
    "$venv/bin/pip" download --disable-pip-version-check -q --no-deps --only-binary=:all: \
        --python-version "$GPU_PYTHON" --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d "$stage/wheels" "tritonclient==$TRITONCLIENT_VERSION" "python-rapidjson==$RAPIDJSON_VERSION"
    du -sh "$stage" >&2

    say "rehearsal on CPU against torch $TORCH_VERSION's libraries"
    "$venv/bin/python" "$root/scripts/gpu_check.py" --device cpu --seconds 3 --out "$gc/cpu-rehearsal"
    cat <<EOF >&2

gpu-check: ready. On the GPU machine (device tool), from the repository root:
  run(command="PYTHONUNBUFFERED=1 scripts/gpu-check.sh run --out \$OUT", carry=["target/gpu-check/stage"], timeout_s=420)
EOF
}

case "${1:-}" in
build) build ;;
run)
    shift
    # Here the rehearsal's venv; there the machine's own python3 (torch 2.11).
    py=python3
    [ -x "$gc/venv/bin/python" ] && py="$gc/venv/bin/python"
    if ! "$py" -c "import tritonclient.grpc" 2>/dev/null; then
        say "installing the staged tritonclient wheels into /tmp/gpu-check-site"
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/gpu-check-site "$stage"/wheels/*.whl
        export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    exec "$py" "$root/scripts/gpu_check.py" "$@"
    ;;
*)
    echo "usage: scripts/gpu-check.sh build | run [--device cuda|cpu] [--seconds N] [--out DIR]" >&2
    exit 2
    ;;
esac
