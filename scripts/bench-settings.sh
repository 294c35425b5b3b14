#!/usr/bin/env bash
# One server binary under different settings (environment and flags), same load generator, the
# settings alternating each round so that this VM's drift falls on all of them alike.
#
#   scripts/bench-settings.sh MODEL CLIENTS SECONDS ROUNDS 'LABEL|ENV|FLAGS' ...
#   e.g. scripts/bench-settings.sh digits 32 4 2 'default||' 'spin|OMP_WAIT_POLICY=ACTIVE|' \
#        'one-thread||--intra-op-threads 1'
#
# Prints one line per round and setting: req/s, client p50 (ms), errors. The load is the bench's
# `load` child (the project's load tester, closed loop, one row per request, binary tensors).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 5 ] || { sed -n 5,7p "$0" >&2; exit 2; }
model=$1 clients=$2 seconds=$3 rounds=$4
shift 4
port=18557
"$root/scripts/setup.sh"
cd "$root"
# shellcheck source=scripts/bench-common.sh
. "$root/scripts/bench-common.sh"
require_free_port "$port"
cargo build --release -p server --bin server --example bench
for round in $(seq 1 "$rounds"); do
    for spec in "$@"; do
        IFS='|' read -r label envs flags <<<"$spec"
        # shellcheck disable=SC2086 # ENV and FLAGS are word lists
        env $envs target/release/server --model-repository models --port "$port" --grpc-port off $flags \
            >/dev/null 2>&1 &
        pid=$!
        wait_until_ready "$pid" "$port" "the server under '$label'"
        target/release/examples/bench load "http://127.0.0.1:$port" "$model" "$clients" 1 >/dev/null
        target/release/examples/bench load "http://127.0.0.1:$port" "$model" "$clients" "$seconds" |
            tail -1 | python3 -c "
import json, sys
s = json.load(sys.stdin)
l = s['latency_ms']['uncorrected']
print('$round', '$label', round(s['achieved_rps']), 'req/s', 'p50', l['p50'], 'ms', 'errors', sum(s['errors'].values()))"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
