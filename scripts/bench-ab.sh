#!/usr/bin/env bash
# Before/after: the shipped server binary at an older revision against the current one, under the
# same load generator (the bench's `load` child: the project's load tester, closed loop, binary
# tensors), alternating old/new for several rounds so the VM's drift hits both alike.
#
#   scripts/bench-ab.sh OLD_REV [ROUNDS] [SECONDS]     e.g. scripts/bench-ab.sh 9629b53 3 5
#
# OLD_REV is built in a scratch worktree sharing this checkout's target/ (only the changed crates
# recompile); both servers run as they ship (access log at info, to /dev/null) on the demo models.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
old_rev=${1:?usage: scripts/bench-ab.sh OLD_REV [ROUNDS] [SECONDS]}
rounds=${2:-3}
seconds=${3:-5}
port=18555
points=("digits 1" "digits 32" "mlp 1" "mlp 32")

"$root/scripts/setup.sh"
cd "$root"
# shellcheck source=scripts/bench-common.sh
. "$root/scripts/bench-common.sh"
require_free_port "$port"
work="$root/target/bench-ab"
mkdir -p "$work"
worktree="$work/old"
git worktree remove --force "$worktree" 2>/dev/null || rm -rf "$worktree"
git worktree add -q --detach "$worktree" "$old_rev"
trap 'git worktree remove --force "$worktree" 2>/dev/null || true' EXIT
ln -s "$root/.libtorch" "$worktree/.libtorch"
(cd "$worktree" && CARGO_TARGET_DIR="$root/target" cargo build --release -p server --bin server)
cp target/release/server "$work/server-old"
# Each revision serves the demo models with its own config.toml (an older binary refuses keys it
# does not know yet); the model files themselves are the same.
rm -rf "$work/models-old"
for dir in models/*/; do
    m=$(basename "$dir")
    mkdir -p "$work/models-old/$m"
    git show "$old_rev:models/$m/config.toml" >"$work/models-old/$m/config.toml"
    for v in "$dir"*/; do ln -s "$root/$v" "$work/models-old/$m/$(basename "$v")"; done
done
cargo build --release -p server --bin server --example bench
cp target/release/server "$work/server-new"

median_line() {
    python3 -c '
import json, sys
s = json.load(sys.stdin)
u = s["latency_ms"]["uncorrected"]
print("%.0f | %.3f | %d" % (s["achieved_rps"], u["p50"], s["requests"] - s["ok"]))'
}

echo "| round | server | model | clients | req/s | p50 ms | errors |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
    for which in old new; do
        # The old binary's rpath names its worktree's .libtorch; both find libtorch here.
        repo=models
        [ "$which" = old ] && repo="$work/models-old"
        # The current binary also serves gRPC unless told not to; the old one may not know the flag.
        extra=()
        [ "$which" = new ] && extra=(--grpc-port off)
        LD_LIBRARY_PATH="$root/.libtorch/lib" "$work/server-$which" --model-repository "$repo" \
            --port "$port" "${extra[@]}" >/dev/null 2>&1 &
        pid=$!
        wait_until_ready "$pid" "$port" "the $which server"
        for point in "${points[@]}"; do
            set -- $point
            line=$(target/release/examples/bench load "http://127.0.0.1:$port" "$1" "$2" "$seconds" | median_line)
            echo "| $round | $which | $1 | $2 | $line |"
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
