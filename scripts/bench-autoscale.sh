#!/usr/bin/env bash
# CPU against queue autoscaling, measured side by side in one session on the local cluster's real
# node (scripts/cluster.sh: kubelet, containerd, Prometheus, KEDA), the same image, pods and step:
#   1. the queue target: one pod (200m CPU, request = limit) under open-loop mlp at rising rates,
#      the namespace's mean queue from Prometheus (the ScaledObject's own query) against the
#      client's p99, so the target is the mean queue per pod at which p99 leaves the SLO;
#   2. the CPU HPA (k8s/base: 70 % of the request) under the step 10 -> 120 -> 10 req/s (about 4 pods' worth);
#   3. the queue HPA (deployer --custom-metrics, KEDA's Prometheus trigger) under the same step, once
#      per target in TORCHSHIP_BENCH_QUEUE_TARGETS (default "2 1");
#   4. `loadtest compare` of the runs: the step's p99, errors, time to the peak replicas,
#      replica-seconds; the HTML reports and the comparison's HTML beside them.
#
#   scripts/bench-autoscale.sh [OUT_DIR]          (default target/bench-autoscale/<UTC time>)
#
# Needs what scripts/test.sh's cluster part needs (root, Go); brings the cluster up if it is down
# (and leaves it as it found it). About 20 minutes, the load bounded in time and rate.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/target/bench-autoscale/$(date -u +%Y%m%dT%H%M%SZ)}
stages=${TORCHSHIP_BENCH_STAGES:-1s:10,29s:10,1s:120,119s:120,1s:10,89s:10}
rates=${TORCHSHIP_BENCH_RATES:-20 30 40 50 60 70 80}
# The deployer's default target, and a lower one near where one pod's p99 left 250 ms in step 1
# (measured 2026-12-04 on a 2-core AMD EPYC machine; BENCHMARKS.md).
queue_targets=${TORCHSHIP_BENCH_QUEUE_TARGETS:-2 1}
cd "$root"
"$root/scripts/setup.sh"
cargo build --release --locked -p loadtest -p deployer
mkdir -p "$out"
say() { echo "bench-autoscale: $*" >&2; }

scripts/image.sh build
if scripts/cluster.sh status >/dev/null 2>&1; then started=""; else started=1; scripts/cluster.sh up; fi
[ -z "$started" ] || trap 'scripts/cluster.sh down' EXIT
scripts/image.sh import
image=$(scripts/image.sh ref)
in_cluster() { scripts/cluster.sh exec "$@"; }
deployer() { in_cluster target/release/deployer "$@"; }
loadtest() { in_cluster target/release/loadtest "$@"; }
prom="http://127.0.0.1:9090"
pods=(--node real-cpu-1 --image "$image" --image-pull-policy Never --cpu-request 200m --cpu-limit 200m
    --memory-request 768Mi --scale-down-window 30s --timeout 300s)

deploy() { # deploy NS ARGS...: a fresh namespace with the server
    local ns=$1
    shift
    in_cluster kubectl delete namespace "$ns" --ignore-not-found --timeout 120s >/dev/null
    deployer --namespace "$ns" apply "${pods[@]}" "$@" | tail -n 1 >&2
}
undeploy() { deployer --namespace "$1" delete --node real-cpu-1 "${@:2}" >/dev/null; }
service_url() {
    echo "http://$(in_cluster kubectl get svc torchship-server -n "$1" -o jsonpath='{.spec.clusterIP}')"
}
mean_queue() { # mean_queue NS WINDOW: the ScaledObject's query over WINDOW, now
    in_cluster curl -fsS "$prom/api/v1/query" \
        --data-urlencode "query=sum(rate(torchship_queue_duration_seconds_sum{namespace=\"$1\"}[$2]))" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print("%.2f" % float(r[0]["value"][1]) if r else "none")'
}

say "1. the queue target: one pod, rising rates"
deploy ts-bench-one --min-replicas 1 --max-replicas 1
url=$(service_url ts-bench-one)
printf '%-8s %-12s %-10s %-10s %-8s\n' "req/s" "mean queue" "p50 ms" "p99 ms" "errors" | tee "$out/queue-target.txt"
for rate in $rates; do
    loadtest --url "$url" --model mlp --rate "$rate" --duration 25s --connections 32 --timeout 10s \
        --json "$out/one-$rate.json" >/dev/null
    q=$(mean_queue ts-bench-one 20s)
    python3 - "$out/one-$rate.json" "$rate" "$q" <<'EOF' | tee -a "$out/queue-target.txt"
import json, sys
r = json.load(open(sys.argv[1]))["summary"]
l = r["latency_ms"]["corrected"]
print(f"{sys.argv[2]:<8} {sys.argv[3]:<12} {l['p50']:<10.1f} {l['p99']:<10.1f} {r['requests'] - r['ok']:<8}")
EOF
done
undeploy ts-bench-one

step() { # step NAME ARGS...: the step against a fresh Deployment with the given autoscaler
    local name=$1 ns=ts-bench-${1//./-}
    shift
    say "the step with the $name HPA"
    deploy "$ns" --max-replicas 6 "$@"
    loadtest --url "$(service_url "$ns")" --model mlp --stages "$stages" --connections 64 \
        --connection-lifetime 1s --timeout 10s --watch-hpa torchship-server --namespace "$ns" \
        --json "$out/$name.json" --html "$out/$name.html" | tail -n 4 >&2
    undeploy "$ns" "$@"
}
step cpu
runs=("$out/cpu.json")
for target in $queue_targets; do
    step "queue-$target" --custom-metrics --prometheus-url "$prom" --queue-target "$target"
    runs+=("$out/queue-$target.json")
done

say "4. compare"
target/release/loadtest compare "${runs[@]}" --html "$out/compare.html" | tee "$out/compare.txt"
say "reports in $out (cpu.html, queue-*.html, compare.html)"
