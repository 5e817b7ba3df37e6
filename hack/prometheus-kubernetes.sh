#!/usr/bin/env bash
# Print the path of a Prometheus with Kubernetes service discovery, of the pinned version
# (PROMETHEUS_VERSION below), building it on first use from its Go module into
# ~/.cache/tether/tools/prometheus-kubernetes-<version>/.
#
# Why not Debian's (hack/observability.sh): bookworm's prometheus package is built without the
# kubernetes_sd_configs discovery ("field kubernetes_sd_configs not found"), and the cluster
# tests scrape the operator and the sidecars through exactly that discovery, as the Prometheus
# Operator configures it from the chart's ServiceMonitor and PodMonitor
# (tests/e2e/_monitoring.py). Upstream links every discovery (AWS, Azure, GCE, ...) through
# its plugins package; the build here compiles cmd/prometheus's main.go from the module with
# that one import swapped for the Kubernetes discovery (file and static discovery are built
# in), in a small wrapper module, so it compiles client-go and not the cloud SDKs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Not in versions.env: every assignment there is part of the Kubernetes binary cache key.
# 2.53 is a long-term-support release; its module version is v0.53.x.
PROMETHEUS_VERSION=v2.53.3
MODULE_VERSION=v0.53.3

MOD=github.com/prometheus/prometheus
DIR="$TETHER_CACHE/tools/prometheus-kubernetes-$PROMETHEUS_VERSION"
if [ -x "$DIR/prometheus" ]; then echo "$DIR/prometheus"; exit 0; fi
command -v go >/dev/null || die "Go is needed at /usr/local/go/bin/go to build Prometheus"
mkdir -p "$(dirname "$DIR")"
exec 8>"$DIR.lock"
flock -w 1800 8 || die "another build has held $DIR.lock for 30 minutes"
if [ ! -x "$DIR/prometheus" ]; then
  log "Building Prometheus $PROMETHEUS_VERSION with Kubernetes discovery (cached in $DIR; a few minutes of CPU the first time)"
  export GOCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/build" \
    GOMODCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/mod" GOTOOLCHAIN=local CGO_ENABLED=0 \
    GOFLAGS=-mod=mod
  stage="$DIR.tmp"
  rm -rf "$stage" && mkdir -p "$stage/src"
  src="$(cd / && go mod download -json "$MOD@$MODULE_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" \
    || die "go mod download $MOD@$MODULE_VERSION failed (Go module proxy reachable?)"
  [ -f "$src/cmd/prometheus/main.go" ] || die "no cmd/prometheus/main.go in $MOD@$MODULE_VERSION"
  grep -q '_ "github.com/prometheus/prometheus/plugins"' "$src/cmd/prometheus/main.go" \
    || die "cmd/prometheus/main.go of $MODULE_VERSION no longer imports the plugins package"
  sed 's#_ "github.com/prometheus/prometheus/plugins".*#_ "github.com/prometheus/prometheus/discovery/kubernetes"#' \
    "$src/cmd/prometheus/main.go" > "$stage/src/main.go"
  # The module's own replace directives (klog through go-kit's logger) do not apply to a
  # dependency: repeat them in the wrapper.
  common="$(sed -n 's#^[[:space:]]*github.com/prometheus/common \(v[^ ]*\)$#\1#p' "$src/go.mod" | head -1)"
  (cd "$stage/src" && go mod init tether.local/build/prometheus >/dev/null 2>&1 \
    && go mod edit -replace k8s.io/klog=github.com/simonpasquier/klog-gokit@v0.3.0 \
         -replace k8s.io/klog/v2=github.com/simonpasquier/klog-gokit/v3@v3.3.0 \
    && go get "$MOD@$MODULE_VERSION" "github.com/prometheus/common@$common" \
    && go mod tidy \
    && nice -n 10 go build -trimpath -o "$stage/prometheus" -ldflags "-s -w \
      -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v} \
      -X github.com/prometheus/common/version.Branch=tether-kubernetes-sd" .) \
    || die "building Prometheus $PROMETHEUS_VERSION failed (see the output above); nothing was installed"
  got="$("$stage/prometheus" --version 2>&1 | head -1)" || die "the built prometheus does not run"
  case "$got" in *"${PROMETHEUS_VERSION#v}"*) ;; *) die "the built prometheus says $got, not $PROMETHEUS_VERSION";; esac
  rm -rf "$stage/src" && rm -rf "$DIR" && mv "$stage" "$DIR"
fi
exec 8>&-
echo "$DIR/prometheus"
