# The metrics pipeline the queue-depth autoscaler needs, sourced by scripts/cluster.sh: Prometheus
# (scraping the server's pods with k8s/monitoring/prometheus.yml) and KEDA (its operator, which runs
# the Prometheus scaler and owns the HPA of a ScaledObject, and its metrics API server, registered as
# external.metrics.k8s.io). All three run as processes in the cluster's network namespace, like
# metrics-server: on 127.0.0.1, but for the KEDA adapter's own /metrics, which KEDA binds to every
# address of the namespace (its --port takes no host), so an INPUT rule drops whatever reaches that
# port on any interface but loopback; nothing in the namespace routes out.

prometheus_port=9090
keda_grpc_port=9666
keda_adapter_port=6444
keda_adapter_metrics_port=9022

pipeline_pki() { # called from make_pki: the identities and the KEDA parts' mTLS certificate
    cert prometheus torchship-prometheus
    cert keda-operator keda-operator system:masters
    cert keda-adapter keda-metrics-apiserver system:masters
    # One serving-and-client certificate for the operator's gRPC metrics service and the adapter
    # that dials it (KEDA reads ca.crt, tls.crt and tls.key from one folder, as its Helm chart
    # mounts them), and for the adapter's HTTPS port.
    cert keda-tls keda "" "IP:127.0.0.1,DNS:localhost"
    mkdir -p "$state/keda/certs"
    cp "$pki/ca.crt" "$state/keda/certs/ca.crt"
    cp "$pki/keda-tls.crt" "$state/keda/certs/tls.crt"
    cp "$pki/keda-tls.key" "$state/keda/certs/tls.key"
    local who
    for who in prometheus keda-operator keda-adapter; do kubeconfig "$state/$who.kubeconfig" "$who"; done
}

prometheus_config() { # the shipped scrape config, with the kubeconfig a process outside the cluster needs
    sed "s#^\([[:space:]]*\)- role: pod\$#&\n\1  kubeconfig_file: $state/prometheus.kubeconfig#" \
        "$root/k8s/monitoring/prometheus.yml"
}

start_prometheus() {
    mkdir -p "$state/prometheus"
    prometheus_config >"$state/prometheus.yml"
    start prometheus "$bin_cache/prometheus-$prometheus_version/prometheus" \
        --config.file "$state/prometheus.yml" --storage.tsdb.path "$state/prometheus" \
        --storage.tsdb.retention.time 6h --web.listen-address "127.0.0.1:$prometheus_port" \
        --log.level warn
    wait_for prometheus 60 in_ns curl -fsS "http://127.0.0.1:$prometheus_port/-/ready"
}

start_keda() {
    local k="$bin_cache/keda-$keda_version" certs="$state/keda/certs"
    kubectl_admin create namespace keda >/dev/null
    kubectl_admin apply --server-side -f "$k/crd" >/dev/null
    wait_for "KEDA CRDs (Established)" 60 kubectl_admin wait --for condition=Established \
        crd/scaledobjects.keda.sh crd/scaledjobs.keda.sh --timeout 1s
    # The namespace KEDA keeps its cluster-wide objects in (read from the pod's service account
    # token folder in a pod; given here).
    local env="env POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda WATCH_NAMESPACE="
    start keda-operator $env KUBECONFIG="$state/keda-operator.kubeconfig" "$k/operator" \
        --cert-dir "$certs" --metrics-service-bind-address "127.0.0.1:$keda_grpc_port" \
        --metrics-bind-address 0 --health-probe-bind-address 127.0.0.1:9667 \
        --ca-dir "$certs" --zap-log-level info
    # The adapter's /metrics listens on every address of the namespace (KEDA's --port takes no
    # host): only loopback may reach it. The rules go with the namespace at `down`.
    local iptables
    for iptables in iptables ip6tables; do
        in_ns $iptables -I INPUT ! -i lo -p tcp --dport $keda_adapter_metrics_port -j DROP ||
            die "$iptables could not fence the KEDA adapter's metrics port"
    done
    local a="$state/keda-adapter.kubeconfig"
    start keda-adapter $env KUBECONFIG="$a" "$k/adapter" \
        --lister-kubeconfig "$a" --authentication-kubeconfig "$a" --authorization-kubeconfig "$a" \
        --bind-address 127.0.0.1 --secure-port $keda_adapter_port --cert-dir "$certs" \
        --tls-cert-file "$certs/tls.crt" --tls-private-key-file "$certs/tls.key" \
        --metrics-service-address "127.0.0.1:$keda_grpc_port" --port $keda_adapter_metrics_port
    wait_for keda-operator 60 in_ns curl -fsS http://127.0.0.1:9667/readyz
    wait_for keda-adapter 60 in_ns curl -fsSk "https://127.0.0.1:$keda_adapter_port/livez"
    kubectl_admin apply -f "$root/scripts/cluster/keda-apiservice.yaml" >/dev/null
}

start_pipeline() {
    kubectl_admin apply -f "$root/k8s/monitoring/rbac.yaml" >/dev/null
    kubectl_admin create clusterrolebinding torchship-prometheus-discovery \
        --clusterrole torchship-prometheus-discovery --user torchship-prometheus >/dev/null
    start_prometheus
    start_keda
}

wait_pipeline() { # after the nodes: KEDA's APIService answers
    wait_for "external metrics API (v1beta1.external.metrics.k8s.io Available)" 120 \
        kubectl_admin wait --for condition=Available apiservice v1beta1.external.metrics.k8s.io --timeout 1s
}
