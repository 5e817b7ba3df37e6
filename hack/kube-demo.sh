#!/usr/bin/env bash
# `make kube-demo`: README.md's "Run it on Kubernetes" block, as written, on the local
# cluster (started, or brought up to date, first). The block is what a user runs on their
# own cluster; running it from README.md keeps the two from drifting apart, and
# tests/e2e/test_readme.py runs the same block.
source "$(dirname "${BASH_SOURCE[0]}")/cluster/config.sh"
source "$HACK_DIR/cluster/node.sh"
need_root "kube-demo"

# The first ```sh block under "## Run it on Kubernetes".
readme_block() {
  awk '/^## /{in_section = ($0 == "## Run it on Kubernetes")}
       in_section && /^```sh$/ {inside = 1; next}
       inside && /^```$/ {exit}
       inside {print}' "$REPO_ROOT/README.md"
}

# The block's images are never pulled here (no registry): say which is missing and why,
# instead of letting `kubectl wait` time out on a pod in ImagePullBackOff.
check_images() {
  local app refs ref have
  app="$(sed -nE 's/^appVersion: "?([^"]+)"?$/\1/p' "$REPO_ROOT/charts/tether/Chart.yaml")"
  refs="docker.io/tether/operator:$app docker.io/tether/sidecar:$app $(
    sed -nE 's#^ *image: (docker\.io/tether/[^ ]+)$#\1#p' \
      "$REPO_ROOT/examples/kubernetes/test-doubles.yaml" "$REPO_ROOT/crds/samples/agenttask.yaml")"
  have="$(ctr_k8s images ls -q)"
  for ref in $refs; do
    grep -qx "$ref" <<<"$have" || die "image $ref is not in the node's containerd and cannot be pulled offline; hack/images.sh builds docker.io/tether/* (make cluster-up imports them)"
  done
}

"$HACK_DIR/cluster-up.sh" >/dev/null
check_images
block="$(readme_block)"
[ -n "$block" ] || die "README.md has no \`\`\`sh block under \"## Run it on Kubernetes\""
export KUBECONFIG="$KUBECONFIG_ADMIN" PATH="$K8S_BIN_DIR:$PATH"
cd "$REPO_ROOT" || die "cannot enter $REPO_ROOT"
log "Running README.md's \"Run it on Kubernetes\" block"
bash -euo pipefail -x -c "$block"
