#!/usr/bin/env bash
# Start the local test cluster (or confirm it is running) and print the kubeconfig.
#   Tier A: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
#   Tier B: containerd + runc + CNI bridge + kubelet + kube-proxy = one real node,
#           and CoreDNS behind the kube-dns Service
# Idempotent: a healthy cluster is reused and brought up to date (components whose
# configuration changed are restarted, new ones started: node_converge); anything else
# (a half-started cluster, state from a crash) is torn down and started fresh.
# Set TETHER_NO_NODE=1 for Tier A only (no root-level networking, no images).
source "$(dirname "${BASH_SOURCE[0]}")/cluster/config.sh"
for f in proc certs control-plane node addons teardown; do source "$HACK_DIR/cluster/$f.sh"; done

need_root "cluster-up"
apt_ensure openssl curl iproute2 util-linux
T0=$(date +%s)
"$HACK_DIR/k8s-binaries.sh"
export TETHER_BINARIES_VERIFIED=1

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
[ "${TETHER_NO_NODE:-}" = 1 ] || COMPONENTS+=(apiserver-forward containerd kubelet kube-proxy)

healthy() {
  local c; for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null || return 1; done
  kubectl_admin get --raw /readyz >/dev/null 2>&1 || return 1
  [ "${TETHER_NO_NODE:-}" = 1 ] && return 0
  node_ready && addons_ready
}

if healthy; then
  log "Cluster already up"
  [ "${TETHER_NO_NODE:-}" = 1 ] || node_converge
  # The repo may have changed since: new pods should get images of the current code.
  [ "${TETHER_NO_NODE:-}" = 1 ] || import_images
  # And the add-ons of the current recipe (an image tag or a manifest may have changed).
  [ "${TETHER_NO_NODE:-}" = 1 ] || addons_up
  echo "$KUBECONFIG_ADMIN"; exit 0
fi

if [ -d "$CLUSTER_DIR" ]; then
  running=(); for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null && running+=("$c"); done
  if [ ${#running[@]} -gt 0 ]; then
    log "Cluster in $CLUSTER_DIR is unhealthy (running: ${running[*]}); tearing it down to start fresh"
  else
    log "Found stale state in $CLUSTER_DIR from an earlier run (no component running); removing it"
  fi
  cluster_teardown
fi

check_port_free "$ETCD_PORT" etcd
check_port_free "$ETCD_PEER_PORT" "etcd peer"
check_port_free "$APISERVER_PORT" apiserver
check_port_free "$KCM_PORT" kcm
check_port_free "$SCHEDULER_PORT" scheduler
if [ "${TETHER_NO_NODE:-}" != 1 ]; then
  check_port_free "$KUBELET_PORT" kubelet
  check_port_free "$KUBELET_HEALTHZ_PORT" "kubelet healthz"
  check_port_free "$KUBE_PROXY_METRICS_PORT" "kube proxy metrics"
  check_port_free "$KUBE_PROXY_HEALTHZ_PORT" "kube proxy healthz"
  check_port_free "$DNS_PORT" dns
  check_port_free "$DNS_READY_PORT" "dns ready"
fi

# From here on, a failure leaves a half-started cluster: say how to clean up.
trap 'rc=$?; [ $rc -ne 0 ] && log "cluster-up failed; logs are in $LOGS. make cluster-down removes the partial cluster; make cluster-up retries from scratch"' EXIT

mkdir -p "$CLUSTER_DIR" "$LOGS"
make_certs
control_plane_up
start_kwok
if [ "${TETHER_NO_NODE:-}" != 1 ]; then
  node_up
  addons_up
fi
log "Cluster up in $(( $(date +%s) - T0 ))s. Use: export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "$KUBECONFIG_ADMIN"
