#!/usr/bin/env bash
# Show which cluster components run, the nodes, and the kubeconfig path.
# Exit 0 when every component runs and the apiserver is ready, 1 otherwise.
source "$(dirname "${BASH_SOURCE[0]}")/cluster/config.sh"
source "$HACK_DIR/cluster/proc.sh"
rc=0
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok apiserver-forward containerd kubelet kube-proxy coredns; do
  if pid="$(live_pid "$c")"; then printf '%-24s running (pid %s)\n' "$c" "$pid"
  elif [ "${TETHER_NO_NODE:-}" = 1 ] && [[ " apiserver-forward containerd kubelet kube-proxy coredns " == *" $c "* ]]; then
    printf '%-24s skipped (TETHER_NO_NODE=1)\n' "$c"
  else printf '%-24s NOT running\n' "$c"; rc=1; fi
done
if kubectl_admin get --raw /readyz >/dev/null 2>&1; then
  kubectl_admin get nodes -o wide
else
  echo "apiserver: not ready"; rc=1
fi
echo "KUBECONFIG=$KUBECONFIG_ADMIN"
exit $rc
