# shellcheck shell=bash
# Cluster add-ons applied after the node is Ready.

addons_up() {
  local vol="$CLUSTER_DIR/volumes"
  mkdir -p "$vol"
  sed -e "s#@VOLUME_DIR@#$vol#" -e "s#@TAG@#$TETHER_VERSION#" \
    "$HACK_DIR/cluster/manifests/local-path-provisioner.yaml" \
    | kubectl_admin apply -f - > "$LOGS/addons.log" 2>&1 \
    || { cat "$LOGS/addons.log" >&2; die "applying the local-path-provisioner manifests failed"; }
  wait_for local-path-provisioner 120 addons_ready
  # Pods need a ServiceAccount before they can be created in a namespace.
  wait_for kube-controller-manager 60 kubectl_admin -n default get serviceaccount default
}

addons_ready() {  # rolled out: the current spec seen, its one replica updated and available
  local s
  s="$(kubectl_admin -n local-path-storage get deployment local-path-provisioner -o jsonpath=\
'{.metadata.generation}/{.status.observedGeneration} {.status.replicas}/{.status.updatedReplicas}/{.status.availableReplicas}' \
    2>/dev/null)" || return 1
  [ "${s%% *}" = "${s%%/*}/${s%%/*}" ] && [ "${s#* }" = 1/1/1 ]
}
