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
if [ -x "$DIR/helm" ]; then echo "$DIR/helm"; exit 0; fi

command -v go >/dev/null || die "Go is needed at /usr/local/go/bin/go to build helm $HELM_VERSION"
mkdir -p "$TOOLS"
exec 8>"$TOOLS/.helm.lock"  # two test targets at once build it once
flock -w 900 8 || die "another build has held $TOOLS/.helm.lock for 15 minutes"
if [ ! -x "$DIR/helm" ]; then
  log "Building helm $HELM_VERSION (go install, cached in $DIR)"
  stage="$DIR.tmp"
  rm -rf "$stage" && mkdir -p "$stage"
  # Flags as hack/k8s-binaries.sh builds helm, so its compiled packages are reused.
  GOCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/build" \
    GOMODCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/mod" GOTOOLCHAIN=local CGO_ENABLED=0 \
    GOFLAGS=-mod=mod GOBIN="$stage" nice -n 10 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || die "go install of helm $HELM_VERSION failed (see the output above)"
  got="$("$stage/helm" version --template '{{.Version}}')"
  [ "$got" = "$HELM_VERSION" ] || die "the built helm says it is $got, not $HELM_VERSION"
  rm -rf "$DIR" && mv "$stage" "$DIR"  # by rename: a half-built tool is never found
fi
echo "$DIR/helm"
