# The local cluster's certificates and kubeconfigs (openssl); sourced by scripts/cluster.sh, which
# sets $state. Everything is for 127.0.0.1 (and the real node's own address in the cluster's network
# namespace) only and lives in $state/pki, made anew by every `up`.

# cert NAME CN [O] [SAN]: a key and a certificate signed by $ca (default: the cluster CA).
cert() {
    local name=$1 cn=$2 org=${3:-} san=${4:-} ca=${ca:-ca}
    local subj="/CN=$cn${org:+/O=$org}" ext="$pki/$name.ext"
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >"$ext"
    if [ -n "$san" ]; then
        printf 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >>"$ext"
    else
        printf 'extendedKeyUsage=clientAuth\n' >>"$ext"
    fi
    openssl req -new -key "$pki/$name.key" -subj "$subj" 2>/dev/null |
        openssl x509 -req -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial -days 30 \
            -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null || die "openssl could not sign $name"
    rm -f "$ext"
}

new_ca() { # new_ca NAME CN
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$1.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/$1.key" -subj "/CN=$2" -days 30 -out "$pki/$1.crt" 2>/dev/null ||
        die "openssl could not make the $2 CA"
}

# kubeconfig FILE CERT_NAME: a self-contained kubeconfig for the cluster as that client identity.
kubeconfig() {
    local b64="base64 -w0"
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: torchship-local
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority-data: $($b64 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$pki/$2.crt")
    client-key-data: $($b64 <"$pki/$2.key")
contexts:
- name: torchship-local
  context:
    cluster: torchship-local
    user: $2
current-context: torchship-local
EOF
    chmod 600 "$1"
}

make_pki() {
    command -v openssl >/dev/null 2>&1 || die "openssl not found (Debian/Ubuntu: apt-get install openssl)"
    pki="$state/pki"
    mkdir -p "$pki"
    new_ca ca torchship-local-ca
    new_ca front-proxy-ca torchship-local-front-proxy-ca
    local local_sans="IP:127.0.0.1,DNS:localhost"
    cert apiserver kube-apiserver "" "$local_sans,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1"
    cert kubelet-client kube-apiserver-kubelet-client system:masters
    cert admin torchship-admin system:masters
    cert controller-manager system:kube-controller-manager
    cert scheduler system:kube-scheduler
    cert kwok kwok-controller system:masters
    cert metrics-server metrics-server system:masters
    # kwok serves the nodes' kubelet endpoints (metrics) on 127.0.0.1; metrics-server verifies it.
    cert kwok-serving kwok "" "$local_sans"
    # The real node: kubelet's own identity (the Node authorizer's system:node:<name>), the serving
    # certificate metrics-server verifies at the node's address, and kube-proxy's identity.
    cert kubelet "system:node:$node_name" system:nodes
    cert kubelet-serving "$node_name" "" "IP:$node_ip,DNS:$node_name"
    cert kube-proxy system:kube-proxy
    ca=front-proxy-ca cert front-proxy-client front-proxy-client
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    for who in admin controller-manager scheduler kwok metrics-server kubelet kube-proxy; do
        kubeconfig "$state/$who.kubeconfig" "$who"
    done
    pipeline_pki
}
