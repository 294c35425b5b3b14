# The local cluster's real node, real-cpu-1: kubelet and kube-proxy (the cluster's own Kubernetes
# build), containerd 2 with runc and the CNI plugins (bridge, host-local, loopback, portmap), all
# built from Go modules by build.sh. Sourced by scripts/cluster.sh (which sets $state, $netns,
# $bin_cache and the versions).
#
# Network: everything stays in the cluster's network namespace. The node's address (10.200.0.1)
# sits on a veth there (tsnode0, its peer tsnode1 beside it), pods get 10.245.0.0/24 on the bridge tspod0, and the namespace
# has no default route: a pod or a client can reach the node, the pods and the Services' ClusterIPs
# (a route to 10.96.0.0/16 on that veth lets kube-proxy's DNAT happen), nothing else.
# The node's processes enter only the network namespace (nsenter --net), not a mount namespace of
# their own as `ip netns exec` gives: kubelet needs the host's /sys/fs/cgroup, which `ip netns exec`
# remounts away, and kubelet and containerd must see each other's mounts. Every mount they make is
# under $state, so `down` can find and unmount them.

node_name=real-cpu-1
node_ip=10.200.0.1
pod_cidr=10.245.0.0/24
node_port=10250
pause_image=torchship.local/pause:3.10

node_bin() { echo "$bin_cache/$1-$2"; }
ctrd_sock() { echo "$state/containerd/containerd.sock"; }
in_node_ns() { nsenter --net="/run/netns/$netns" "$@"; }
crictl_node() { "$(node_bin cri-tools "$crictl_version")/crictl" --runtime-endpoint "unix://$(ctrd_sock)" --timeout 20s "$@"; }
ctr_node() { "$(node_bin containerd "$containerd_version")/ctr" --address "$(ctrd_sock)" "$@"; }

# What a real node needs of this machine; each missing piece is named with how to get it, before
# anything starts.
node_preflight() {
    command -v nsenter >/dev/null 2>&1 || die "nsenter not found (Debian/Ubuntu: apt-get install util-linux)"
    command -v iptables >/dev/null 2>&1 && command -v iptables-restore >/dev/null 2>&1 ||
        die "iptables not found: kube-proxy programs Services with it (Debian/Ubuntu: apt-get install iptables)"
    command -v conntrack >/dev/null 2>&1 ||
        die "conntrack not found: kube-proxy needs it (Debian/Ubuntu: apt-get install conntrack)"
    grep -qw overlay /proc/filesystems ||
        die "the kernel has no overlay filesystem: containerd's overlayfs snapshotter needs it (modprobe overlay)"
    local c
    for c in cpu cpuacct cpuset memory pids; do
        [ -d "/sys/fs/cgroup/$c" ] || [ -f /sys/fs/cgroup/cgroup.controllers ] ||
            die "cgroup controller '$c' is not mounted (/sys/fs/cgroup/$c): kubelet needs cpu, cpuacct, cpuset, memory and pids"
    done
    [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
        die "br_netfilter is missing (/proc/sys/net/bridge): Services between pods on one bridge need it (modprobe br_netfilter)"
    command -v "${CC:-gcc}" >/dev/null 2>&1 || die "gcc not found: the pause image is compiled here (apt-get install gcc libc6-dev)"
}

# The node's address on one end of a veth pair whose other end stays in the namespace too: a
# dummy interface would do, but not every kernel has the dummy driver (this machine kind's has not).
node_network() {
    in_ns ip link add tsnode0 type veth peer name tsnode1
    in_ns ip addr add "$node_ip/32" dev tsnode0
    in_ns ip link set tsnode1 up
    in_ns ip link set tsnode0 up
    in_ns ip route add 10.96.0.0/16 dev tsnode0 src "$node_ip"
    in_ns sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

# kubelet's cgroupRoot, /$netns in every hierarchy it uses: it must exist before kubelet starts.
# A new cpuset cgroup (v1) starts with no CPUs and no memory nodes: it gets its parent's.
node_cgroups() {
    local c
    for c in cpu cpuacct cpuset memory pids systemd hugetlb blkio devices freezer; do
        [ -d "/sys/fs/cgroup/$c" ] || continue
        mkdir -p "/sys/fs/cgroup/$c/$netns"
    done
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$netns/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$netns/cpuset.mems"
}

# The sandbox ("pause") image: upstream's own pause.c from the k8s.io/kubernetes module, built
# static, in a one-layer OCI image (no registry can be reached for registry.k8s.io/pause).
pause_archive() {
    local out="$bin_cache/pause-$k8s_version"
    [ -f "$out/pause.oci.tar" ] && return 0
    local dir src
    dir=$(go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    src="$dir/build/pause/linux/pause.c"
    [ -f "$src" ] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$k8s_version"
    rm -rf "$out" && mkdir -p "$out/rootfs"
    "${CC:-gcc}" -Os -static -DVERSION="$k8s_version" -o "$out/rootfs/pause" "$src" ||
        die "could not compile pause.c statically (apt-get install libc6-dev)"
    strip "$out/rootfs/pause" 2>/dev/null || true
    "$root/scripts/image/oci-layout.sh" "$out/rootfs" "$out/layout" "$pause_image" \
        '{"Entrypoint":["/pause"],"User":"65535:65535"}' >/dev/null
    tar -C "$out/layout" -cf "$out/pause.oci.tar" .
}

containerd_config() {
    local cni="$(node_bin cni-plugins "$cni_version")" runc="$(node_bin runc "$runc_version")/runc"
    cat <<EOF
version = 3
root = "$state/containerd/root"
state = "$state/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$(ctrd_sock)"
[ttrpc]
  address = "$state/containerd/containerd.sock.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$pause_image"

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE (this machine kind drops it), so no process may lower its
  # oom_score_adj: the sandboxes' -998 (and Guaranteed pods' -997) are capped at containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$cni"]
    conf_dir = "$state/cni/net.d"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
}

cni_config() {
    cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "torchship",
  "plugins": [
    {
      "type": "bridge", "bridge": "tspod0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$state/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

kubelet_config() {
    local p="$state/pki"
    cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine kind mounts the cgroup v1 controllers (cgroup2 only at /sys/fs/cgroup/unified);
# Kubernetes 1.35+ refuses v1 unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$netns
address: $node_ip
port: $node_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$(ctrd_sock)
tlsCertFile: $p/kubelet-serving.crt
tlsPrivateKeyFile: $p/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization:
  mode: Webhook
failSwapOn: false
maxPods: 30
serializeImagePulls: false
# The machine's disk is shared with the builds: evict only when it is really full. Absolute, not
# a percentage: 2 % of a 250 GB disk is 5 GB, which the tests' own image and builds can leave, and
# the disk-pressure taint then keeps every pod off the node.
evictionHard: {memory.available: 200Mi, nodefs.available: 1Gi, imagefs.available: 1Gi}
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 97
resolvConf: /etc/resolv.conf
EOF
}

kube_proxy_config() {
    cat <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $state/kube-proxy.kubeconfig
hostnameOverride: $node_name
clusterCIDR: 10.245.0.0/16
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# nf_conntrack_max is the machine's, not the namespace's: leave it alone.
conntrack:
  maxPerCore: 0
EOF
}

# start_in_node NAME BINARY ARGS...: as start, in the network namespace only (see the top), and in
# the node's mount namespace: the kubelet's, once it runs (restart-containerd may be run from inside
# `cluster.sh exec`, whose mount namespace has a /sys of its own).
start_in_node() {
    local name=$1 mnt=/proc/self/ns/mnt
    shift
    if alive kubelet; then mnt="/proc/$(cat "$state/pids/kubelet")/ns/mnt"; fi
    nsenter --mount="$mnt" --net="/run/netns/$netns" setsid sh -c 'echo $$ >"$0"; exec "$@"' "$state/pids/$name" "$@" \
        >"$state/logs/$name.log" 2>&1 </dev/null &
    local i
    for i in $(seq 50); do [ -s "$state/pids/$name" ] && return 0; sleep 0.1; done
    die "$name did not start (log: $state/logs/$name.log)"
}

# The shim is found on PATH; runc is named in the config. Also `cluster.sh restart-containerd`:
# the containers outlive containerd (their shims do), and it finds them again.
start_containerd() {
    local ctrd
    ctrd=$(node_bin containerd "$containerd_version")
    start_in_node containerd env PATH="$ctrd:$PATH" "$ctrd/containerd" --config "$state/containerd/config.toml"
    wait_for containerd 60 ctr_node version
}

start_node() {
    pause_archive
    node_network
    node_cgroups
    mkdir -p "$state/containerd" "$state/cni/net.d" "$state/kubelet"
    containerd_config >"$state/containerd/config.toml"
    cni_config >"$state/cni/net.d/10-torchship.conflist"
    kubelet_config >"$state/kubelet/config.yaml"
    kube_proxy_config >"$state/kube-proxy.yaml"
    start_containerd
    ctr_node -n k8s.io images import --no-unpack=false "$bin_cache/pause-$k8s_version/pause.oci.tar" >/dev/null ||
        die "could not import the pause image into containerd"
    start_in_node kubelet "$kube_bin/kubelet" --config "$state/kubelet/config.yaml" \
        --kubeconfig "$state/kubelet.kubeconfig" --hostname-override "$node_name" --node-ip "$node_ip" \
        --root-dir "$state/kubelet" --cert-dir "$state/kubelet/pki" --v 1
    start_in_node kube-proxy "$kube_bin/kube-proxy" --config "$state/kube-proxy.yaml" --v 1
}

# Before the control plane stops: kubelet, then every pod through the CRI (their containers,
# network namespaces and mounts), while containerd still runs.
stop_node() {
    if alive kubelet; then kill -TERM "$(cat "$state/pids/kubelet")" 2>/dev/null || true; fi
    local i=0
    while alive kubelet && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if alive containerd; then
        crictl_node rmp --all --force >/dev/null 2>&1 || say "crictl rmp failed; the pods are stopped by cgroup below"
    fi
}

# After containerd has stopped: what can outlive it. A shim outlives containerd by design, and a
# container outlives a killed shim; both are found by what is ours (the shims by this containerd's
# socket in their command line, the containers by kubelet's cgroup root for this cluster), stopped
# by pid, then every mount under $state is unmounted and the pods' cgroups removed.
unmount_under_state() {
    local pid c mnt
    for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $(ctrd_sock)" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for c in /sys/fs/cgroup/*/"$netns"; do
        [ -d "$c" ] || continue
        for pid in $(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    findmnt -rn -o TARGET | { grep "^$state/" || true; } | sort -r | while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || say "could not unmount $mnt"
    done
    for c in /sys/fs/cgroup/*/"$netns"; do
        [ -d "$c" ] || continue
        local t
        for t in $(seq 20); do
            find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$c" ] || break
            sleep 0.1
        done
        [ -d "$c" ] && say "could not remove the cgroup $c"
    done
    return 0
}
