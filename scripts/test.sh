#!/usr/bin/env bash
# Sets up (idempotent) and runs every test of the workspace:
#   1. unit tests and the end-to-end tests, which start real servers on 127.0.0.1:0 with the real
#      demo models, and the deployer's and load tester's tests against the scripted stand-in API;
#   2. the real-cluster tests (crates/cluster-e2e): scripts/image.sh builds the server's image from
#      docker/Dockerfile with BuildKit and scripts/cluster.sh its binaries (both in the background
#      during step 1, niced), scripts/cluster.sh starts a real control plane and a real
#      node (kubelet, containerd) in a network namespace of its own (all built from Go modules on
#      first use, then cached), the image is imported into the node's containerd, the tests run
#      inside that namespace, and the cluster is stopped at the end. Without Go or root they are
#      skipped with a message saying what is missing; in CI (CI set) that is a failure.
# Arguments go to both `cargo test` runs (e.g. a test name filter).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
status=0
missing=""
command -v go >/dev/null 2>&1 || missing="Go >= 1.26 (https://go.dev/dl, or your distribution's golang package)"
[ "$(id -u)" = 0 ] || missing="${missing:+$missing; }root (the cluster runs in a network namespace of its own)"
command -v ip >/dev/null 2>&1 || missing="${missing:+$missing; }iproute2 (apt-get install iproute2)"

# The cluster's binaries (Go) and the server's image (BuildKit) are built in the background while
# the workspace tests run, at the lowest CPU priority (nice 19: the tests keep the CPU whenever
# they want it). On a fresh machine they are ~35 min of CPU, some of which fits in the idle time of
# the set-up and the tests (downloads, servers waiting on sockets, load paced by the clock); when
# cached they take seconds. One job, in order: both build runc from the same cache folder.
logs="$root/target/test-logs"
mkdir -p "$logs"
builds=""
# Whatever ends this script before the builds are waited for (a failed set-up, a test that does not
# compile, Ctrl-C) ends them too, every go build under them.
trap '[ -z "$builds" ] || kill -- "-$builds" 2>/dev/null || true' EXIT
if [ -z "$missing" ]; then
    # A process group of its own, for the trap above.
    setsid nice -n 19 bash -c 'scripts/cluster.sh build && scripts/image.sh build' \
        >"$logs/builds.log" 2>&1 </dev/null &
    builds=$!
fi
# After the builds have started: they need nothing of it, and its downloads leave the CPU idle.
"$root/scripts/setup.sh"

# --no-fail-fast: one failing test binary must not hide the failures of the binaries after it.
cargo test --workspace --locked --no-fail-fast --exclude cluster-e2e "$@" || status=$?

if [ -n "$missing" ]; then
    echo "" >&2
    echo "*** SKIPPED: the real-cluster tests (crates/cluster-e2e) need: $missing ***" >&2
    echo "" >&2
    [ -z "${CI:-}" ] || { echo "test: CI must run the real-cluster tests" >&2; exit 1; }
    exit "$status"
fi

# A cluster of the tests' own (its own state folder and network namespace), so a cluster someone
# started by hand with scripts/cluster.sh up is left alone.
export TORCHSHIP_CLUSTER_DIR="$root/target/cluster-test"
# Built here, where the registries can be reached; the namespace has only loopback. The deployer,
# loadtest and server binaries the tests run were built by the workspace tests above (a separate
# `cargo build -p ...` would only rebuild them with other feature unification).
cargo test --locked -p cluster-e2e --no-run "$@"
t0=$SECONDS
wait "$builds" || {
    tail -n 40 "$logs/builds.log" >&2
    echo "test: building the cluster's binaries or the server's image failed (log: $logs/builds.log)" >&2
    exit 1
}
grep -E '^(cluster|image): (built|image )' "$logs/builds.log" >&2 || true
echo "test: cluster binaries and image ready $((SECONDS - t0)) s after the workspace tests" >&2
# The node's image store, the pods' logs and the cluster's state share this disk with target/ and
# the build caches; the kubelet taints the node (disk pressure) when under 1 GiB is left, and the
# image alone takes several. Say so now rather than as unschedulable pods later.
free_gb=$(df -Pk "$root" | awk 'NR == 2 { print int($4 / 1048576) }')
echo "test: ${free_gb} GB free on the disk of $root" >&2
[ "$free_gb" -ge "8" ] || {
    echo "test: the real-cluster tests need at least 8 GB free; free some (old target/ folders; BuildKit's cache in ~/.cache/torchship/image is rebuilt on demand)" >&2
    exit 1
}
builds=""
t0=$SECONDS
trap 'scripts/cluster.sh down' EXIT
scripts/cluster.sh up
echo "test: cluster up in $((SECONDS - t0)) s" >&2
scripts/image.sh import
image=$(scripts/image.sh ref)
scripts/cluster.sh exec env TORCHSHIP_SERVER_IMAGE="$image" \
    cargo test --locked -p cluster-e2e --no-fail-fast "$@" || status=$?
exit "$status"
