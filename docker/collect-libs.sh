#!/usr/bin/env bash
# Copies the shared libraries a binary loads into one folder, for the runtime stage of
# docker/Dockerfile; the list is derived from the built binary, never written by hand.
#
#   docker/collect-libs.sh BINARY DEST
#
# 1. `ldd BINARY`: every library the dynamic loader resolves for it, transitively (libtorch,
#    c10, CUDA's runtime, cuBLAS, cuDNN, NCCL, ... as the torch wheel ships them).
# 2. Libraries of the base system (/lib, /usr/lib, /lib64: glibc, libstdc++, libgcc_s) are left
#    to the runtime image, which has its own.
# 3. Libraries open companions named after themselves with dlopen, which ldd cannot see: cuDNN 9
#    its sub-libraries (libcudnn_ops, libcudnn_engines_*), NVRTC its builtins, libtorch_cuda
#    libtorch_cuda_linalg. So each library also brings the .so files beside it whose names start
#    with its own stem (the name before ".so").
# DEST/LIBRARIES.txt lists every file with where it came from and why.
# With COLLECT_LINK=1 files are hard-linked instead of copied (the tests, on one file system).
set -euo pipefail
bin=${1:?usage: collect-libs.sh BINARY DEST}
dest=${2:?usage: collect-libs.sh BINARY DEST}
mkdir -p "$dest"
: > "$dest/LIBRARIES.txt"

put() { # put FILE NAME WHY
    [ -e "$dest/$2" ] && return 0
    if [ "${COLLECT_LINK:-0}" = 1 ] && ln "$1" "$dest/$2" 2>/dev/null; then :; else cp "$1" "$dest/$2"; fi
    echo "$2 <- $1 ($3)" >> "$dest/LIBRARIES.txt"
}

resolved=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
if grep -q "not found" <<<"$(ldd "$bin")"; then
    echo "collect-libs: ldd cannot resolve every library of $bin:" >&2
    ldd "$bin" | grep "not found" >&2
    exit 1
fi
while read -r name path; do
    case "$path" in /lib/* | /usr/lib/* | /lib64/*) continue ;; esac
    real=$(readlink -f "$path")
    put "$real" "$name" "ldd"
    stem=${name%%.so*}
    for sibling in "$(dirname "$real")/$stem"*.so*; do
        [ -f "$sibling" ] || continue
        put "$(readlink -f "$sibling")" "$(basename "$sibling")" "opened by $name"
    done
done <<<"$resolved"
echo "collect-libs: $(wc -l < "$dest/LIBRARIES.txt") libraries, $(du -shL "$dest" | cut -f1), in $dest"
