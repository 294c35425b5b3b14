# The versions of everything scripts/cluster.sh and scripts/image.sh build from Go modules; a new
# version here is built once and cached beside the old one.
k8s_version=v1.36.3
etcd_version=v3.6.16
kwok_version=v0.8.0
metrics_server_version=v0.8.0
containerd_version=v2.4.2
runc_version=v1.5.3
cni_version=v1.10.0
crictl_version=v1.37.0
buildkit_version=v0.34.2
prometheus_version=v0.316.0
keda_version=v2.21.0
