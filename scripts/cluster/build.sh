# Builds the local cluster's binaries from the Go module proxy, once per version; sourced by
# scripts/cluster.sh (which sets the versions and $bin_cache).
#
# Each tool is built in a wrapper module of its own (minimal version selection would otherwise mix
# kwok's, metrics-server's and Kubernetes' client libraries). Kubernetes' commands cannot be
# `go install`ed: upstream's go.mod requires its staging modules (k8s.io/api, ...) at v0.0.0 and
# replaces them with ./staging paths, so the wrapper requires k8s.io/kubernetes and replaces every
# staging module, read from upstream's own go.mod, with its published v0.X.Y. Binaries land in
# $bin_cache/<tool>-<version>/ (outside the work tree) and are reused while the version holds.

# build_in_wrapper NAME VERSION OUT LDFLAGS: a scratch module with go.mod = $go_line plus
# $wrapper_extra (godebug/require/replace lines), `go get -tool` of each package in $wrapper_tools
# at VERSION (so each tool's requires come at the versions its own go.mod asks for), then one
# go build of them all into OUT. $wrapper_cgo (default 0) and $wrapper_tags (default upstream
# Kubernetes' "selinux,notest") set CGO_ENABLED and the build tags.
build_in_wrapper() {
    local name=$1 version=$2 out=$3 ldflags=$4
    local work="$bin_cache/src/$name-$version"
    rm -rf "$work" "$out.partial"
    mkdir -p "$work" "$out.partial"
    printf 'module torchship.local/cluster/%s\n\ngo %s\n%s\n' "$name" "$go_line" "$wrapper_extra" >"$work/go.mod"
    say "building $name $version (go build; the first build of a version takes minutes)"
    local t0=$SECONDS pkg
    (
        cd "$work"
        for pkg in $wrapper_tools; do go get -tool "$pkg@$version"; done
        go mod tidy
        CGO_ENABLED=${wrapper_cgo:-0} go build -trimpath -tags "${wrapper_tags:-selinux,notest}" -ldflags "$ldflags" \
            -o "$out.partial/" $wrapper_tools
    ) >"$bin_cache/build-$name.log" 2>&1 || {
        tail -n 30 "$bin_cache/build-$name.log" >&2
        die "building $name $version failed (log: $bin_cache/build-$name.log)"
    }
    rm -rf "$out"
    mv "$out.partial" "$out"
    say "built $name $version in $((SECONDS - t0)) s"
}

go_mod_file() { # go_mod_file MODULE VERSION: the path of that module version's go.mod in the cache
    go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

build_kubernetes() {
    local out="$bin_cache/kubernetes-$k8s_version"
    [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/kubelet" ] && [ -x "$out/kube-proxy" ] && return 0
    local gomod
    gomod=$(go_mod_file k8s.io/kubernetes "$k8s_version") && [ -f "$gomod" ] ||
        die "the Go module proxy did not serve k8s.io/kubernetes@$k8s_version"
    local minor patch staging
    minor=$(echo "$k8s_version" | cut -d. -f2)
    patch=$(echo "$k8s_version" | cut -d. -f3)
    staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
    [ -n "$staging" ] || die "no staging replaces found in $gomod"
    go_line=$(sed -n 's/^go //p' "$gomod")
    wrapper_extra="$(grep '^godebug ' "$gomod" || true)
replace (
$(for m in $staging; do printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"; done)
)"
    wrapper_tools="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy"
    # The version ldflags of upstream's hack/lib/version.sh: without them /version says v0.0.0-master.
    local ld="" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        ld+=" -X $pkg.gitCommit=torchship-local-build"
    done
    build_in_wrapper kubernetes "$k8s_version" "$out" "-s -w$ld"
}

build_etcd() {
    local out="$bin_cache/etcd-$etcd_version"
    [ -x "$out/etcd" ] && return 0
    go_line=1.26.0 wrapper_extra="" wrapper_tools="go.etcd.io/etcd/server/v3"
    build_in_wrapper etcd "$etcd_version" "$out.build" "-s -w"
    # go build names the module-root main package of .../server/v3 "server".
    mkdir -p "$out" && mv "$out.build/server" "$out/etcd" && rm -rf "$out.build"
}

build_kwok() {
    local out="$bin_cache/kwok-$kwok_version"
    [ -x "$out/kwok" ] && [ -d "$out/kustomize" ] && return 0
    go_line=1.26.0 wrapper_extra="" wrapper_tools="sigs.k8s.io/kwok/cmd/kwok"
    build_in_wrapper kwok "$kwok_version" "$out" "-s -w"
    # kwok v0.8 has no built-in stages: keep the stage, usage and metric YAMLs its module ships.
    local dir
    dir=$(go mod download -json "sigs.k8s.io/kwok@$kwok_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$out/kustomize"
    cp -r "$dir/kustomize/stage" "$dir/kustomize/metrics" "$out/kustomize/"
    chmod -R u+w "$out/kustomize"
}

build_metrics_server() {
    local out="$bin_cache/metrics-server-$metrics_server_version"
    [ -x "$out/metrics-server" ] && return 0
    go_line=1.26.0 wrapper_extra="" wrapper_tools="sigs.k8s.io/metrics-server/cmd/metrics-server"
    build_in_wrapper metrics-server "$metrics_server_version" "$out" "-s -w"
}

# The real node's parts. Each module's own go line (they need newer Go than Kubernetes does).
build_module_tools() { # build_module_tools NAME MODULE VERSION OUT PACKAGES...
    local name=$1 module=$2 version=$3 out=$4 gomod
    shift 4
    gomod=$(go_mod_file "$module" "$version") && [ -f "$gomod" ] ||
        die "the Go module proxy did not serve $module@$version"
    go_line=$(sed -n 's/^go //p' "$gomod") wrapper_extra=${module_extra:-} wrapper_tools="$*"
    build_in_wrapper "$name" "$version" "$out" "${wrapper_ldflags:--s -w}"
}

build_containerd() {
    local out="$bin_cache/containerd-$containerd_version" m=github.com/containerd/containerd/v2
    [ -x "$out/containerd" ] && [ -x "$out/containerd-shim-runc-v2" ] && [ -x "$out/ctr" ] && return 0
    # Static, as upstream releases it (the btrfs snapshotter, which needs cgo, is left out).
    wrapper_ldflags="-s -w -X $m/version.Version=$containerd_version -X $m/version.Revision=torchship-local-build" \
        build_module_tools containerd "$m" "$containerd_version" "$out" \
        "$m/cmd/containerd" "$m/cmd/containerd-shim-runc-v2" "$m/cmd/ctr"
}

build_runc() {
    local out="$bin_cache/runc-$runc_version"
    [ -x "$out/runc" ] && return 0
    # runc needs cgo for its nsenter part and libseccomp for seccomp profiles (RuntimeDefault).
    command -v "${CC:-gcc}" >/dev/null 2>&1 ||
        die "runc is built with cgo and needs a C compiler: apt-get install gcc"
    pkg-config --exists libseccomp 2>/dev/null ||
        die "runc needs libseccomp's headers for seccomp profiles: apt-get install libseccomp-dev pkg-config"
    wrapper_cgo=1 wrapper_tags="seccomp urfave_cli_no_docs" \
        wrapper_ldflags="-s -w -X main.version=${runc_version#v} -X main.gitCommit=torchship-local-build" \
        build_module_tools runc github.com/opencontainers/runc "$runc_version" "$out" github.com/opencontainers/runc
}

build_cni_plugins() {
    local out="$bin_cache/cni-plugins-$cni_version" m=github.com/containernetworking/plugins/plugins
    [ -x "$out/bridge" ] && [ -x "$out/host-local" ] && [ -x "$out/loopback" ] && [ -x "$out/portmap" ] && return 0
    build_module_tools cni-plugins github.com/containernetworking/plugins "$cni_version" "$out" \
        "$m/main/bridge" "$m/main/loopback" "$m/ipam/host-local" "$m/meta/portmap"
}

build_crictl() {
    local out="$bin_cache/cri-tools-$crictl_version"
    [ -x "$out/crictl" ] && return 0
    build_module_tools cri-tools sigs.k8s.io/cri-tools "$crictl_version" "$out" sigs.k8s.io/cri-tools/cmd/crictl
}

build_buildkit() {
    local out="$bin_cache/buildkit-$buildkit_version" m=github.com/moby/buildkit
    [ -x "$out/buildkitd" ] && [ -x "$out/buildctl" ] && return 0
    wrapper_ldflags="-s -w -X $m/version.Version=$buildkit_version -X $m/version.Revision=torchship-local-build" \
        build_module_tools buildkit "$m" "$buildkit_version" "$out" "$m/cmd/buildkitd" "$m/cmd/buildctl"
}

# The metrics pipeline for the queue-depth HPA: Prometheus (Kubernetes service discovery only: the
# remove_all_sd tag drops the cloud SDKs of every other discovery, enable_kubernetes_sd keeps this
# one; no builtinassets, so no web UI, the HTTP API is all the tests use) and KEDA (operator and
# metrics API server, the external.metrics.k8s.io provider the HPA reads).
build_prometheus() {
    local out="$bin_cache/prometheus-$prometheus_version" v=github.com/prometheus/common/version
    [ -x "$out/prometheus" ] && return 0
    wrapper_tags="remove_all_sd enable_kubernetes_sd" \
        wrapper_ldflags="-s -w -X $v.Version=$prometheus_version -X $v.Revision=torchship-local-build -X $v.Branch=module" \
        build_module_tools prometheus github.com/prometheus/prometheus "$prometheus_version" "$out" \
        github.com/prometheus/prometheus/cmd/prometheus
}

build_keda() {
    local out="$bin_cache/keda-$keda_version" m=github.com/kedacore/keda/v2 gomod
    [ -x "$out/operator" ] && [ -x "$out/adapter" ] && [ -d "$out/crd" ] && return 0
    gomod=$(go_mod_file "$m" "$keda_version") && [ -f "$gomod" ] ||
        die "the Go module proxy did not serve $m@$keda_version"
    # KEDA's go.mod replaces and excludes modules; a dependent's build ignores those unless its own
    # go.mod repeats them, so the wrapper does.
    module_extra=$(grep -E '^(replace|exclude) ' "$gomod" || true) \
        wrapper_ldflags="-s -w -X $m/version.Version=${keda_version#v} -X $m/version.GitCommit=torchship-local-build" \
        build_module_tools keda "$m" "$keda_version" "$out" "$m/cmd/operator" "$m/cmd/adapter"
    local dir
    dir=$(go mod download -json "$m@$keda_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$out/crd"
    # Every CRD the operator's controllers watch: it does not start with one of them missing.
    cp "$dir"/config/crd/bases/*.yaml "$out/crd/"
    chmod -R u+w "$out/crd"
}

build_all() {
    command -v go >/dev/null 2>&1 ||
        die "go not found: the local cluster is built from Go modules (Go >= 1.26; Debian: the golang package of 1.26 or newer, or https://go.dev/dl)"
    mkdir -p "$bin_cache"
    build_etcd
    build_kwok
    build_metrics_server
    build_kubernetes
    build_containerd
    build_runc
    build_cni_plugins
    build_crictl
    build_prometheus
    build_keda
}
