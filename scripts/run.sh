#!/usr/bin/env bash
# Sets up (idempotent) and runs the server on the demo models at http://127.0.0.1:8080.
# Extra arguments go to the server, e.g. scripts/run.sh --port 9000 --device cpu.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
cd "$root"
exec cargo run --release -p server -- "$@"
