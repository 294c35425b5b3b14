#!/usr/bin/env bash
# A real Kubernetes cluster on this machine, for the tests and for people, with no Docker and no
# download but the Go module proxy:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler (built from Go modules);
#   one real node, real-cpu-1: kubelet, containerd 2 + runc, CNI bridge networking and kube-proxy
#   (pods there run real containers; scripts/image.sh builds and imports the server's image);
#   kwok (simulated kubelets: kwok-* nodes are API objects, their pods become Running/Ready but run
#   nothing) and metrics-server (real pod CPU from the real kubelet, kwok's emulated usage for kwok's
#   pods, so the real HPA controller scales either way);
#   Prometheus (k8s/monitoring/prometheus.yml, on 127.0.0.1:9090) and KEDA (operator and metrics API
#   server, external.metrics.k8s.io), the pipeline of the queue-depth autoscaler.
# Every process runs inside a private network namespace with no route out: loopback, the node's
# address (10.200.0.1) on a veth (tsnode0), and the pods' bridge (10.245.0.0/24). Listeners are on
# 127.0.0.1, but for the kubelet on the node's address; nothing of the cluster, or of a client
# started with `exec`, can send a packet off the machine. Pod IPs and ClusterIPs are dialled only
# from inside the namespace.
#
#   scripts/cluster.sh build            build the binaries (once per version, cached outside the tree)
#   scripts/cluster.sh up               build if needed, start, create the nodes, wait until Ready
#   scripts/cluster.sh exec CMD...      run CMD in the cluster's namespace, KUBECONFIG set, kubectl on PATH
#   scripts/cluster.sh kubeconfig       print the admin kubeconfig's path
#   scripts/cluster.sh status           processes, nodes, metrics API
#   scripts/cluster.sh restart-containerd
#                                       (re)start the real node's containerd (e.g. after it was killed)
#   scripts/cluster.sh prometheus stop|start
#                                       stop or start the metrics pipeline's Prometheus (its data kept)
#   scripts/cluster.sh cpu-usage NS SELECTOR CPU
#                                       emulated CPU usage for the matching pods (e.g. 400m each)
#   scripts/cluster.sh down             stop exactly the processes `up` started, remove the state
#
# Nodes: real-cpu-1 (real, InternalIP 10.200.0.1), kwok-cpu-1, kwok-cpu-2 (CPU only) and kwok-gpu-1
# (nvidia.com/gpu: 2, label nvidia.com/gpu.present=true, taint nvidia.com/gpu=present:NoSchedule),
# the kwok nodes with InternalIP 127.0.0.1.
# State (certificates, kubeconfigs, logs, pids): $TORCHSHIP_CLUSTER_DIR, default .cluster/ in the tree.
# Binaries: ${XDG_CACHE_HOME:-~/.cache}/torchship/cluster/<tool>-<version>/. Needs root (network
# namespaces, cgroups, mounts), Go >= 1.26 with gcc (runc uses cgo), libseccomp-dev, openssl,
# iproute2, iptables and conntrack; `up` names whatever is missing before it starts anything.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/cluster/versions.sh"
bin_cache=${XDG_CACHE_HOME:-$HOME/.cache}/torchship/cluster
state=${TORCHSHIP_CLUSTER_DIR:-$root/.cluster}
apiserver_port=6443
metrics_port=4443
kwok_port=10250
netns=torchship-$(printf '%s' "$state" | sha256sum | cut -c1-10)

say() { echo "cluster: $*" >&2; }
die() {
    echo "cluster: error: $*" >&2
    exit 1
}
. "$root/scripts/cluster/build.sh"
. "$root/scripts/cluster/pki.sh"
. "$root/scripts/cluster/node.sh"
. "$root/scripts/cluster/pipeline.sh"

kube_bin="$bin_cache/kubernetes-$k8s_version"
kubectl_admin() { ip netns exec "$netns" "$kube_bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }
in_ns() { ip netns exec "$netns" "$@"; }

# start NAME BINARY ARGS...: a process in the namespace, in a session of its own (it outlives this
# script and the terminal), its pid recorded by the process itself before it execs the binary.
start() {
    local name=$1
    shift
    in_ns setsid sh -c 'echo $$ >"$0"; exec "$@"' "$state/pids/$name" "$@" \
        >"$state/logs/$name.log" 2>&1 </dev/null &
    local i
    for i in $(seq 50); do [ -s "$state/pids/$name" ] && return 0; sleep 0.1; done
    die "$name did not start (log: $state/logs/$name.log)"
}

alive() { # alive NAME: the recorded process still runs the binary we started
    local pid
    pid=$(cat "$state/pids/$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$bin_cache"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds; names WHAT and the logs when it does not.
wait_for() {
    local what=$1 limit=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt "$limit" ] || die "$what not ready after ${limit} s (logs: $state/logs/)"
        for name in $(ls "$state/pids" 2>/dev/null); do
            alive "$name" || { tail -n 20 "$state/logs/$name.log" >&2; die "$name exited (log: $state/logs/$name.log)"; }
        done
        sleep 0.5
    done
    say "$what ready ($((SECONDS - t0)) s)"
}

start_etcd() {
    start etcd "$bin_cache/etcd-$etcd_version/etcd" --name local --data-dir "$state/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster local=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
        --unsafe-no-fsync --log-level warn
    wait_for etcd 60 in_ns curl -fsS http://127.0.0.1:2379/health
}

start_apiserver() {
    local p="$state/pki"
    # No default route in the namespace: the advertise address is given, and with a loopback one the
    # endpoint reconciler (which refuses loopback endpoints) is off; nothing dials the kubernetes
    # Service's ClusterIP here.
    start kube-apiserver "$kube_bin/kube-apiserver" \
        --etcd-servers http://127.0.0.1:2379 --bind-address 127.0.0.1 --secure-port $apiserver_port \
        --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
        --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
        --client-ca-file "$p/ca.crt" --authorization-mode Node,RBAC --allow-privileged \
        --service-cluster-ip-range 10.96.0.0/16 \
        --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
        --kubelet-preferred-address-types InternalIP \
        --kubelet-client-certificate "$p/kubelet-client.crt" --kubelet-client-key "$p/kubelet-client.key" \
        --proxy-client-cert-file "$p/front-proxy-client.crt" --proxy-client-key-file "$p/front-proxy-client.key" \
        --requestheader-client-ca-file "$p/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --enable-priority-and-fairness=false --profiling=false --v 1
    wait_for kube-apiserver 120 in_ns curl -fsS --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" \
        "https://127.0.0.1:$apiserver_port/readyz"
}

start_controllers() {
    local p="$state/pki" cm="$state/controller-manager.kubeconfig" sch="$state/scheduler.kubeconfig"
    # Every controller with its own ServiceAccount's credentials, as kubeadm runs it. The node
    # lifecycle controller runs too: it removes the node.kubernetes.io/not-ready taint that the API
    # server puts on every new node, and it watches the leases kwok renews for its nodes.
    start kube-controller-manager "$kube_bin/kube-controller-manager" \
        --kubeconfig "$cm" --authentication-kubeconfig "$cm" --authorization-kubeconfig "$cm" \
        --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
        --root-ca-file "$p/ca.crt" --service-account-private-key-file "$p/sa.key" \
        --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
        --horizontal-pod-autoscaler-sync-period 5s \
        --profiling=false --v 1
    start kube-scheduler "$kube_bin/kube-scheduler" \
        --kubeconfig "$sch" --authentication-kubeconfig "$sch" --authorization-kubeconfig "$sch" \
        --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v 1
    # Pods are refused until the namespace's default ServiceAccount exists.
    wait_for "controllers (default ServiceAccount)" 120 kubectl_admin get serviceaccount default -n default
}

kwok_config() {
    local k="$bin_cache/kwok-$kwok_version/kustomize" f
    for f in stage/node/fast/node-initialize.yaml stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        stage/pod/fast/pod-ready.yaml \
        stage/pod/fast/pod-complete.yaml stage/pod/fast/pod-delete.yaml \
        metrics/usage/usage-from-annotation.yaml metrics/resource/metrics-resource.yaml; do
        echo "---"
        cat "$k/$f"
    done
}

start_metrics() {
    local p="$state/pki" ms="$state/metrics-server.kubeconfig"
    kwok_config >"$state/kwok.yaml"
    start kwok "$bin_cache/kwok-$kwok_version/kwok" --kubeconfig "$state/kwok.kubeconfig" \
        --config "$state/kwok.yaml" --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake --node-ip 127.0.0.1 --node-port $kwok_port \
        --server-address "127.0.0.1:$kwok_port" --cidr 10.244.0.0/16 --node-lease-duration-seconds 40 \
        --tls-cert-file "$p/kwok-serving.crt" --tls-private-key-file "$p/kwok-serving.key"
    start metrics-server "$bin_cache/metrics-server-$metrics_server_version/metrics-server" \
        --kubeconfig "$ms" --authentication-kubeconfig "$ms" --authorization-kubeconfig "$ms" \
        --bind-address 127.0.0.1 --secure-port $metrics_port --cert-dir "$state/metrics-server" \
        --kubelet-preferred-address-types InternalIP --kubelet-use-node-status-port \
        --kubelet-certificate-authority "$p/ca.crt" --metric-resolution 15s
    wait_for metrics-server 60 in_ns curl -fsSk "https://127.0.0.1:$metrics_port/livez"
    kubectl_admin apply -f "$root/scripts/cluster/metrics-apiservice.yaml" >/dev/null
}

nodes_schedulable() { # no node carries node.kubernetes.io/not-ready any more
    ! kubectl_admin get nodes -o jsonpath='{.items[*].spec.taints[*].key}' | grep -q node.kubernetes.io/not-ready
}

create_nodes() {
    # A plain create: server-side apply would reset status, and with it the GPU capacity.
    kubectl_admin create -f "$root/scripts/cluster/nodes.yaml" >/dev/null
    kubectl_admin apply -f "$root/scripts/cluster/gpu-device-plugin.yaml" >/dev/null
    wait_for "nodes (Ready)" 120 kubectl_admin wait --for condition=Ready node --all --timeout 1s
    wait_for "nodes (not-ready taint lifted)" 120 nodes_schedulable
    wait_for "metrics API (v1beta1.metrics.k8s.io Available)" 120 \
        kubectl_admin wait --for condition=Available apiservice v1beta1.metrics.k8s.io --timeout 1s
}

cmd_up() {
    if [ -f "$state/up" ] && alive kube-apiserver; then
        say "already up (scripts/cluster.sh down to stop it)"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "needs root: the cluster runs in a network namespace of its own (ip netns)"
    command -v ip >/dev/null 2>&1 || die "ip not found (Debian/Ubuntu: apt-get install iproute2)"
    command -v curl >/dev/null 2>&1 || die "curl not found (Debian/Ubuntu: apt-get install curl)"
    node_preflight
    build_all
    pause_archive
    [ -d "$state" ] && cmd_down
    local t0=$SECONDS
    mkdir -p "$state/pids" "$state/logs"
    # A namespace of this name with no state is left from a run that was killed: it is ours (the name
    # is derived from the state folder), and nothing in it is recorded any more.
    ip netns del "$netns" 2>/dev/null || true
    ip netns add "$netns" || die "ip netns add $netns failed"
    echo "$netns" >"$state/netns"
    in_ns ip link set lo up
    make_pki
    start_etcd
    start_apiserver
    start_controllers
    start_metrics
    start_pipeline
    create_nodes
    wait_pipeline
    start_node
    wait_for "$node_name (Ready, containerd)" 180 kubectl_admin wait --for condition=Ready "node/$node_name" --timeout 1s
    wait_for "$node_name (not-ready taint lifted)" 60 nodes_schedulable
    touch "$state/up"
    say "up in $((SECONDS - t0)) s: Kubernetes $k8s_version, namespace $netns; scripts/cluster.sh exec kubectl get nodes"
}

cmd_down() {
    [ -d "$state" ] || { say "not up"; return 0; }
    if alive kube-apiserver; then
        # The metrics APIService first: one registered but down stalls discovery and namespace deletion.
        kubectl_admin delete apiservice v1beta1.metrics.k8s.io v1beta1.external.metrics.k8s.io \
            --ignore-not-found --timeout 10s >/dev/null 2>&1 || true
    fi
    stop_node
    local order="kube-proxy containerd keda-adapter keda-operator prometheus metrics-server kwok kube-scheduler kube-controller-manager kube-apiserver etcd" name pid
    for name in $order; do
        alive "$name" && kill -TERM "$(cat "$state/pids/$name")" 2>/dev/null || true
    done
    for name in $order; do
        local i=0
        while alive "$name" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        alive "$name" && { say "$name did not stop on SIGTERM; SIGKILL"; kill -KILL "$(cat "$state/pids/$name")" || true; }
    done
    unmount_under_state
    local ns
    ns=$(cat "$state/netns" 2>/dev/null || true)
    # The node's veth pair, the pods' bridge and the veths go with the namespace.
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
    rm -rf "$state"
    say "down"
}

cmd_exec() {
    [ -f "$state/up" ] && alive kube-apiserver || die "the cluster is not up (scripts/cluster.sh up)"
    [ $# -gt 0 ] || die "usage: scripts/cluster.sh exec CMD [ARGS...]"
    exec ip netns exec "$netns" env KUBECONFIG="$state/admin.kubeconfig" \
        TORCHSHIP_CLUSTER_DIR="$state" PATH="$kube_bin:$PATH" "$@"
}

cmd_status() {
    [ -d "$state" ] || { say "not up"; return 1; }
    local name
    for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok metrics-server prometheus \
        keda-operator keda-adapter containerd kubelet kube-proxy; do
        if alive "$name"; then echo "$name: running (pid $(cat "$state/pids/$name"))"; else echo "$name: NOT running"; fi
    done
    echo "network namespace: $netns; listeners:"
    in_ns ss -ltnH | awk '{print "  " $4}'
    kubectl_admin get nodes -o wide
    kubectl_admin get apiservice v1beta1.metrics.k8s.io v1beta1.external.metrics.k8s.io
    echo "mounts under $state: $(findmnt -rn -o TARGET | grep -c "^$state/" || true)"
}

cmd_cpu_usage() {
    [ $# -eq 3 ] || die "usage: scripts/cluster.sh cpu-usage NAMESPACE LABEL_SELECTOR CPU (e.g. default app=torchship 400m)"
    kubectl_admin annotate pods -n "$1" -l "$2" --overwrite "kwok.x-k8s.io/usage-cpu=$3" >/dev/null
    say "pods $2 in $1 now use $3 CPU each (metrics-server sees it within ~30 s)"
}

case "${1:-}" in
build) build_all && say "binaries ready in $bin_cache" ;;
up) cmd_up ;;
down) cmd_down ;;
exec) shift && cmd_exec "$@" ;;
kubeconfig) echo "$state/admin.kubeconfig" ;;
status) cmd_status ;;
restart-containerd)
    [ -f "$state/up" ] || die "the cluster is not up (scripts/cluster.sh up)"
    if alive containerd; then kill -TERM "$(cat "$state/pids/containerd")"; fi
    while alive containerd; do sleep 0.2; done
    start_containerd
    ;;
cpu-usage) shift && cmd_cpu_usage "$@" ;;
prometheus)
    [ -f "$state/up" ] || die "the cluster is not up (scripts/cluster.sh up)"
    case "${2:-}" in
    stop)
        if alive prometheus; then kill -TERM "$(cat "$state/pids/prometheus")"; fi
        while alive prometheus; do sleep 0.2; done
        # Stopped on purpose: wait_for, which fails when a recorded process has exited, ignores it.
        rm -f "$state/pids/prometheus"
        say "prometheus stopped"
        ;;
    start) alive prometheus && say "prometheus already runs" || start_prometheus ;;
    *) die "usage: scripts/cluster.sh prometheus stop|start" ;;
    esac
    ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2 && exit 2 ;;
esac
