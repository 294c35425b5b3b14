#!/usr/bin/env bash
# HTTP (KServe v2 with binary tensors) against gRPC (ModelInfer with raw contents) on one server,
# same load generator (the bench's `load` child: the project's load tester, closed loop, one row
# per request), alternating per round so that this VM's drift falls on both alike.
#
#   scripts/bench-grpc.sh [ROUNDS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
seconds=${2:-5}
port=18558
grpc_port=18559
points=("digits 1" "digits 32" "mlp 1" "mlp 32")
"$root/scripts/setup.sh"
cd "$root"
# shellcheck source=scripts/bench-common.sh
. "$root/scripts/bench-common.sh"
require_free_port "$port"
require_free_port "$grpc_port"
cargo build --release -p server --bin server --example bench
target/release/server --model-repository models --port "$port" --grpc-port "$grpc_port" \
    >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
wait_until_ready "$pid" "$port" "the server"
echo "| round | model | clients | api | req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
    for point in "${points[@]}"; do
        set -- $point
        for api in v2-binary grpc; do
            url="http://127.0.0.1:$port"
            [ "$api" = grpc ] && url="http://127.0.0.1:$grpc_port"
            target/release/examples/bench load "$url" "$1" "$2" 1 "$api" >/dev/null
            target/release/examples/bench load "$url" "$1" "$2" "$seconds" "$api" | tail -1 |
                python3 -c "
import json, sys
s = json.load(sys.stdin)
l = s['latency_ms']['uncorrected']
print('| $round | $1 | $2 | $api | %d | %.3f | %.3f | %d |' % (s['achieved_rps'], l['p50'], l['p99'], sum(s['errors'].values())))"
        done
    done
done
