#!/usr/bin/env bash
# Sets up (idempotent) and runs every test of the workspace: unit tests and the end-to-end tests,
# which start real servers on 127.0.0.1:0 with the real demo models.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
cd "$root"
# --no-fail-fast: one failing test binary must not hide the failures of the binaries after it.
exec cargo test --workspace --locked --no-fail-fast "$@"
