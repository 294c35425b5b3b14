#!/usr/bin/env bash
# Builds the server image from docker/Dockerfile with BuildKit on this machine, where no container
# registry can be reached and no Docker engine runs:
#
#   scripts/image.sh build     the CPU variant (VARIANT=cpu); the last line printed is the image
#                              reference with its digest, torchship.local/server@sha256:<64 hex>
#   scripts/image.sh import    imports the last build into the local cluster's containerd (k8s.io
#                              namespace), where the real node's pods find it (scripts/cluster.sh up first)
#   scripts/image.sh ref       prints the last build's reference
#   scripts/image.sh bases     only makes the two base images (a part of build)
#
# What differs from `docker build` with a registry, and why:
# - Every FROM is a named build context, an OCI layout made here, because no registry serves the
#   Dockerfile's defaults: RUST_IMAGE is a Debian bookworm root filesystem (mmdebstrap, from Debian's
#   packages: gcc, g++, python3 as rust:1.95-bookworm has them) with this machine's own Rust
#   toolchain copied in (rustup cannot download here); CPU_IMAGE is Debian bookworm (minbase), not
#   ubuntu:24.04, whose archive is not reachable. The CUDA variant's runtime base
#   (nvidia/cuda:13.0.2-runtime-ubuntu24.04) has no local substitute, so only VARIANT=cpu is built.
# - `# syntax=docker/dockerfile:1` would pull the Dockerfile frontend from Docker Hub: the
#   frontend option `cmdline` (which BuildKit sets when it runs a forwarded frontend) has the
#   built-in one build the Dockerfile itself.
# Everything else (the Dockerfile's RUN steps: apt-get, pip install torch, cargo build --locked,
# the model export, collect-libs.sh) runs as written, in runc containers, with the host's network
# (for PyPI, crates.io and Debian's archive). BuildKit's cache lives in
# ${XDG_CACHE_HOME:-~/.cache}/torchship/image, so a second build reuses every unchanged layer.
# Needs root, Go >= 1.26 (buildkitd, buildctl and runc are built from Go modules, as the cluster's
# parts are), mmdebstrap, gcc and libseccomp-dev.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/cluster/versions.sh"
bin_cache=${XDG_CACHE_HOME:-$HOME/.cache}/torchship/cluster
cache=${XDG_CACHE_HOME:-$HOME/.cache}/torchship/image
image_name=torchship.local/server
rust_base=torchship.local/rust:1.95-bookworm
cpu_base=torchship.local/debian:bookworm

say() { echo "image: $*" >&2; }
die() {
    echo "image: error: $*" >&2
    exit 1
}
. "$root/scripts/cluster/build.sh"

# rootfs NAME STAMP MMDEBSTRAP_ARGS...: a Debian bookworm tree from Debian's packages, cached while
# STAMP (what it was made from) holds.
rootfs() {
    local name=$1 stamp=$2 dir="$cache/rootfs/$1"
    shift 2
    [ -f "$dir.stamp" ] && [ "$(cat "$dir.stamp")" = "$stamp" ] && return 0
    command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not found (Debian/Ubuntu: apt-get install mmdebstrap)"
    say "making the $name root filesystem (mmdebstrap bookworm, Debian's packages)"
    rm -rf "$dir" "$dir.stamp"
    mkdir -p "$(dirname "$dir")"
    mmdebstrap --quiet "$@" bookworm "$dir" >"$cache/mmdebstrap-$name.log" 2>&1 ||
        { tail -n 20 "$cache/mmdebstrap-$name.log" >&2; die "mmdebstrap $name failed (log: $cache/mmdebstrap-$name.log)"; }
    echo "$stamp" >"$dir.stamp"
}

# The two bases as OCI layouts; prints nothing, sets rust_digest and cpu_digest.
bases() {
    local sysroot toolchain
    sysroot=$(rustc --print sysroot) || die "rustc not found: the builder base carries this machine's Rust toolchain"
    toolchain=$(rustc --version)
    local build_pkgs=ca-certificates,gcc,g++,make,libc6-dev,pkg-config,python3,python3-venv,git,curl,xz-utils,binutils,file
    rootfs builder "$build_pkgs $toolchain" --variant=apt --include="$build_pkgs"
    rootfs runtime "minbase" --variant=minbase
    local b="$cache/rootfs/builder"
    if [ "$(cat "$b/usr/local/rust/.toolchain" 2>/dev/null)" != "$toolchain" ]; then
        say "copying $toolchain into the builder base"
        rm -rf "$b/usr/local/rust" && mkdir -p "$b/usr/local/rust" "$b/usr/local/cargo/bin"
        cp -a "$sysroot/bin" "$sysroot/lib" "$b/usr/local/rust/"
        (cd "$b/usr/local/cargo/bin" && ln -sf ../../rust/bin/cargo ../../rust/bin/rustc ../../rust/bin/rustdoc .)
        echo "$toolchain" >"$b/usr/local/rust/.toolchain"
        rm -f "$cache/layout-builder.digest"
    fi
    # The build steps reach PyPI, crates.io and Debian through this machine's network, so they
    # trust what this machine trusts (on some machines an egress proxy's own CA is in that list).
    # Only the builder stage gets it; the runtime image keeps Debian's list.
    local ca=/etc/ssl/certs/ca-certificates.crt
    if [ -f "$ca" ] && ! cmp -s "$ca" "$b$ca"; then
        say "giving the builder base this machine's CA certificates ($ca)"
        cp "$ca" "$b$ca"
        rm -f "$cache/layout-builder.digest"
    fi
    rust_digest=$(layout builder "$rust_base" \
        '{"Env":["PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","CARGO_HOME=/usr/local/cargo","SSL_CERT_FILE='$ca'","PIP_CERT='$ca'","CARGO_HTTP_CAINFO='$ca'"]}')
    cpu_digest=$(layout runtime "$cpu_base" \
        '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}')
}

layout() { # layout NAME REF CONFIG: the rootfs NAME as an OCI layout (made once per rootfs)
    local out="$cache/layout-$1"
    if [ ! -f "$out.digest" ] || [ "$cache/rootfs/$1.stamp" -nt "$out.digest" ]; then
        say "writing the $1 base as an OCI layout"
        "$root/scripts/image/oci-layout.sh" "$cache/rootfs/$1" "$out" "$2" "$3" >"$out.digest"
    fi
    cat "$out.digest"
}

# BuildKit's cache bound (MB, "reserved,free,maximum"): each new dependency layer (any change to a
# workspace manifest) adds gigabytes, so without a bound the cache grows by that per change. GC
# keeps at most 24 GB, prunes to leave 20 GB of the disk free, and never below 12 GB (the current
# image's layers: a warm build stays warm).
gc_keep=12000,20000,24000

# buildkitd for the length of one build: its socket under the cache, its pid recorded and ended.
buildkitd_start() {
    local bk="$bin_cache/buildkit-$buildkit_version" runc="$bin_cache/runc-$runc_version/runc"
    mkdir -p "$cache/buildkit"
    sock="$cache/buildkit/buildkitd.sock"
    rm -f "$sock"
    setsid "$bk/buildkitd" --root "$cache/buildkit/root" --addr "unix://$sock" \
        --oci-worker=true --oci-worker-binary "$runc" --oci-worker-net host \
        --oci-worker-snapshotter overlayfs --containerd-worker=false \
        --oci-worker-gc --oci-worker-gc-keepstorage "$gc_keep" \
        >"$cache/buildkitd.log" 2>&1 </dev/null &
    buildkitd_pid=$!
    trap 'buildkitd_stop' EXIT
    local i
    for i in $(seq 100); do
        "$bk/buildctl" --addr "unix://$sock" debug workers >/dev/null 2>&1 && return 0
        kill -0 "$buildkitd_pid" 2>/dev/null || { tail -n 20 "$cache/buildkitd.log" >&2; die "buildkitd exited"; }
        sleep 0.2
    done
    die "buildkitd did not answer (log: $cache/buildkitd.log)"
}

buildkitd_stop() {
    [ -n "${buildkitd_pid:-}" ] || return 0
    kill -TERM "$buildkitd_pid" 2>/dev/null || true
    local i=0
    while kill -0 "$buildkitd_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$buildkitd_pid" 2>/dev/null || true
    buildkitd_pid=""
}

cmd_build() {
    [ "$(id -u)" = 0 ] || die "needs root: BuildKit runs the Dockerfile's steps in runc containers"
    command -v go >/dev/null 2>&1 || die "go not found: buildkitd, buildctl and runc are built from Go modules (Go >= 1.26)"
    local t0=$SECONDS
    mkdir -p "$bin_cache" "$cache"
    # Free space first, not an ENOSPC at the end: BuildKit's cache holds ~26 GB after the first
    # build (the torch wheel, cargo's target, the libraries twice), the archive ~2.6 GB more.
    local free_gb need_gb=8
    [ -d "$cache/buildkit/root" ] || need_gb=35
    free_gb=$(($(df -Pk "$cache" | awk 'NR == 2 {print $4}') / 1048576))
    [ "$free_gb" -ge "$need_gb" ] ||
        die "$free_gb GB free on the filesystem of $cache: the build needs about $need_gb GB (about 35 GB the first time, for BuildKit's cache)"
    build_runc
    build_buildkit
    local rust_digest cpu_digest
    bases
    buildkitd_start
    say "building docker/Dockerfile (VARIANT=cpu) with BuildKit $buildkit_version (log: $cache/build.log)"
    local tag="$image_name:0.1.0-cpu" out="$cache/server.oci.tar"
    rm -f "$out" "$out.partial" "$cache/ref" # one archive on disk at a time
    "$bin_cache/buildkit-$buildkit_version/buildctl" --addr "unix://$sock" build --progress plain \
        --frontend dockerfile.v0 --local context="$root" --local dockerfile="$root/docker" \
        --opt filename=Dockerfile --opt cmdline=dockerfile.v0 \
        --opt build-arg:VARIANT=cpu --opt build-arg:RUST_IMAGE="$rust_base" --opt build-arg:CPU_IMAGE="$cpu_base" \
        --oci-layout rust-base="$cache/layout-builder" --oci-layout cpu-base="$cache/layout-runtime" \
        --opt "context:$rust_base=oci-layout://rust-base@$rust_digest" \
        --opt "context:$cpu_base=oci-layout://cpu-base@$cpu_digest" \
        --output "type=oci,dest=$out.partial,name=$tag" --metadata-file "$cache/metadata.json" \
        >"$cache/build.log" 2>&1 || { tail -n 40 "$cache/build.log" >&2; die "the build failed (log: $cache/build.log)"; }
    mv "$out.partial" "$out"
    buildkitd_stop
    local digest
    digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$cache/metadata.json")
    [ -n "$digest" ] || die "no image digest in $cache/metadata.json"
    echo "$image_name@$digest" >"$cache/ref"
    say "built in $((SECONDS - t0)) s: $tag, $(du -h "$out" | cut -f1) as an OCI archive"
    cat "$cache/ref"
}

cmd_import() {
    [ -f "$cache/server.oci.tar" ] && [ -f "$cache/ref" ] || die "no image built yet (scripts/image.sh build)"
    local state=${TORCHSHIP_CLUSTER_DIR:-$root/.cluster}
    [ -S "$state/containerd/containerd.sock" ] || die "the cluster's containerd is not running (scripts/cluster.sh up)"
    "$bin_cache/containerd-$containerd_version/ctr" --address "$state/containerd/containerd.sock" \
        -n k8s.io images import "$cache/server.oci.tar" >/dev/null || die "ctr images import failed"
    # The import names the image by its tag only; the kubelet asks the CRI for name@sha256:... (the
    # deployer applies it by digest), which containerd's CRI finds only under that name, as a pull
    # by digest would have recorded it.
    "$bin_cache/containerd-$containerd_version/ctr" --address "$state/containerd/containerd.sock" \
        -n k8s.io images tag --force "$image_name:0.1.0-cpu" "$(cat "$cache/ref")" >/dev/null ||
        die "ctr images tag (the digest reference) failed"
    # Pinned, as the sandbox image is: under disk pressure the kubelet's image GC removes images
    # no pod uses, and no registry could give this one back (seen in CI: ErrImageNeverPull).
    local name
    for name in "$image_name:0.1.0-cpu" "$(cat "$cache/ref")"; do
        "$bin_cache/containerd-$containerd_version/ctr" --address "$state/containerd/containerd.sock" \
            -n k8s.io images label "$name" io.cri-containerd.pinned=pinned >/dev/null ||
            die "ctr images label $name (pinned) failed"
    done
    say "imported $(cat "$cache/ref") into the cluster's containerd (k8s.io)"
}

case "${1:-}" in
build) cmd_build ;;
bases) bases && say "bases ready: $rust_base@$rust_digest, $cpu_base@$cpu_digest" ;;
import) cmd_import ;;
ref) cat "$cache/ref" 2>/dev/null || die "no image built yet (scripts/image.sh build)" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2 && exit 2 ;;
esac
