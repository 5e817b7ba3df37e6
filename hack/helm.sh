#!/usr/bin/env bash
# Print the path of a helm of the pinned version (HELM_VERSION in hack/versions.env), building
# it on first use from its Go module into ~/.cache/tether/tools/helm-<version>/ — helm alone,
# without the Kubernetes binaries of hack/k8s-binaries.sh, whose Go caches it shares (so when
# that script has built helm, this build is a link). A helm on PATH is used when it is that
# version. The chart tests (tests/unit/test_chart_render.py, tests/e2e/test_chart.py) get it
# as $HELM from the make targets.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS="$TETHER_CACHE/tools"
DIR="$TOOLS/helm-$HELM_VERSION"

if command -v helm >/dev/null 2>&1 \
    && [ "$(helm version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
  command -v helm; exit 0
fi
# Flags as hack/k8s-binaries.sh builds helm, so its compiled packages are reused.
go_tool "$DIR" helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "$HELM_VERSION" \
  version --template '{{.Version}}'
