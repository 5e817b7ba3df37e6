# shellcheck shell=bash
# Cluster layout: addresses, ports and paths. Sourced by hack/cluster-*.sh.
# Ports are the upstream defaults; each can be overridden from the environment
# (e.g. TETHER_APISERVER_PORT=16443 make cluster-up) when something else holds one.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

NODE_NAME="${TETHER_NODE_NAME:-tether-node}"
ETCD_PORT="${TETHER_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${TETHER_ETCD_PEER_PORT:-2380}"
APISERVER_PORT="${TETHER_APISERVER_PORT:-6443}"
KCM_PORT="${TETHER_KCM_PORT:-10257}"
SCHEDULER_PORT="${TETHER_SCHEDULER_PORT:-10259}"
KUBELET_PORT="${TETHER_KUBELET_PORT:-10250}"
KUBELET_HEALTHZ_PORT="${TETHER_KUBELET_HEALTHZ_PORT:-10248}"
KUBE_PROXY_METRICS_PORT="${TETHER_KUBE_PROXY_METRICS_PORT:-10249}"
KUBE_PROXY_HEALTHZ_PORT="${TETHER_KUBE_PROXY_HEALTHZ_PORT:-10256}"
# CoreDNS serves on NODE_IP:DNS_PORT (behind the kube-dns Service) and says when it
# has synced with the apiserver on 127.0.0.1:DNS_READY_PORT/ready.
DNS_PORT="${TETHER_DNS_PORT:-53}"
DNS_READY_PORT="${TETHER_DNS_READY_PORT:-10053}"

# Pods live on a bridge we create (cni0). Its gateway address doubles as the node's
# InternalIP: the kubelet refuses a loopback node IP, and using the VM's own eth0
# address would send apiserver->kubelet traffic to a non-test address.
POD_CIDR="10.88.0.0/16"
BRIDGE=cni0
NODE_IP="10.88.0.1"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SVC_IP="10.96.0.1"
# The kube-dns Service: the nameserver in every pod's resolv.conf (kubelet clusterDNS).
DNS_SERVICE_IP="10.96.0.10"
CLUSTER_DOMAIN="cluster.local"

PKI="$CLUSTER_DIR/pki"
LOGS="$CLUSTER_DIR/logs"
PIDS="$CLUSTER_DIR/pids"
RUN="$CLUSTER_DIR/run"
KUBECONFIG_ADMIN="$CLUSTER_DIR/kubeconfig"
CONTAINERD_SOCK="$RUN/containerd/containerd.sock"
# Image store outlives the cluster so a warm cluster-up does not re-import images.
CONTAINERD_ROOT="$TETHER_CACHE/containerd"
KUBELET_DIR="$CLUSTER_DIR/kubelet"
CNI_CONF_DIR="$CLUSTER_DIR/cni/net.d"
CNI_BIN_DIR=/usr/lib/cni

kubectl_admin() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
