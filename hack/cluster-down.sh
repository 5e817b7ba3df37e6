#!/usr/bin/env bash
# Stop the local test cluster and remove its state. Idempotent: with nothing
# running it just makes sure nothing is left. Binary and image caches are kept.
source "$(dirname "${BASH_SOURCE[0]}")/cluster/config.sh"
for f in proc node teardown; do source "$HACK_DIR/cluster/$f.sh"; done
need_root "cluster-down"
if [ ! -d "$CLUSTER_DIR" ] && { [ "${TETHER_NO_NODE:-}" = 1 ] || ! ip link show "$BRIDGE" >/dev/null 2>&1; }; then
  log "No cluster in $CLUSTER_DIR; nothing to do"
  exit 0
fi
T0=$(date +%s)
cluster_teardown
log "Cluster down in $(( $(date +%s) - T0 ))s (caches in $TETHER_CACHE kept)"
