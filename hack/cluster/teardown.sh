# shellcheck shell=bash
# Tear the cluster down completely, whatever state it is in (running, half-started,
# or left behind by a crash), so the next cluster-up starts from nothing.

# Remove every pod sandbox and container from containerd's k8s.io namespace, and
# note their network namespaces. Containers outlive a stopped kubelet (shims keep
# them), and stale records would be resurrected by the next containerd.
_containerd_purge() {
  [ -f "$CLUSTER_DIR/containerd.toml" ] || return 0
  if ! live_pid containerd >/dev/null; then
    mkdir -p "$RUN/containerd"
    start_proc containerd /usr/bin/containerd --config "$CLUSTER_DIR/containerd.toml"
    # In a subshell: wait_for exits on failure, and teardown must go on regardless.
    ( wait_for containerd 30 ctr_k8s version ) \
      || { log "containerd did not start; skipping container cleanup"; return 0; }
  fi
  local id
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s containers info "$id" 2>/dev/null \
      | sed -nE 's#.*"path": "(/var/run/netns/cni-[^"]+|/run/netns/cni-[^"]+)".*#\1#p' >> "$RUN/netns.txt" || true
    ctr_k8s tasks delete -f "$id" >/dev/null 2>&1 || true
    ctr_k8s containers delete "$id" >/dev/null 2>&1 || true
  done
  stop_proc containerd 20
}

# Shims started by our containerd that survived it (found by our socket path, so
# another containerd's shims on this machine are left alone).
_kill_our_shims() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -- "-address $CONTAINERD_SOCK " || continue
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

_unmount_under() {  # dir: unmount everything below it, deepest first
  local m
  findmnt -rn -o TARGET 2>/dev/null | { grep -E "^$1(/|$)" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

# kube-proxy --cleanup removes its own rules; the kubelet's (KUBE-FIREWALL,
# KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) have no cleanup command, so remove every
# KUBE-* chain left and the jumps to it. Only the node instance owns these.
_kubelet_iptables_cleanup() {
  local ipt t rule chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      "$ipt" -t "$t" -S 2>/dev/null | { grep -E -- '^-A [A-Z]+ .*-j KUBE-' || true; } \
        | while read -r rule; do "$ipt" -t "$t" ${rule/#-A/-D} 2>/dev/null || true; done
      for chain in $("$ipt" -t "$t" -S 2>/dev/null | sed -nE 's/^-N (KUBE-[A-Z0-9-]+)$/\1/p'); do
        "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$t" -S 2>/dev/null | sed -nE 's/^-N (KUBE-[A-Z0-9-]+)$/\1/p'); do
        "$ipt" -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

cluster_teardown() {
  local c
  stop_procs coredns kwok kube-proxy kubelet kube-scheduler kube-controller-manager
  if [ -f "$CLUSTER_DIR/kube-proxy.yaml" ]; then
    "$K8S_BIN_DIR/kube-proxy" --cleanup >> "$LOGS/kube-proxy.log" 2>&1 || true
  fi
  _containerd_purge
  _kill_our_shims
  stop_procs apiserver-forward kube-apiserver
  stop_procs etcd
  if [ -f "$RUN/netns.txt" ]; then
    while read -r c; do umount "$c" 2>/dev/null || true; rm -f "$c"; done < "$RUN/netns.txt"
  fi
  _unmount_under "$CLUSTER_DIR"
  _unmount_under "$CONTAINERD_ROOT"
  # Tier-A-only instances (TETHER_NO_NODE=1) share the host with the real node's
  # bridge: only the instance that runs the node may remove it.
  if [ "${TETHER_NO_NODE:-}" != 1 ]; then
    ip link del "$BRIDGE" 2>/dev/null || true
    _kubelet_iptables_cleanup
  fi
  rm -rf "$CLUSTER_DIR" || die "cannot remove $CLUSTER_DIR (a mount may still be busy: findmnt | grep $CLUSTER_DIR)"
}
