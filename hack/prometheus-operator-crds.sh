#!/usr/bin/env bash
# Print the directory holding the Prometheus Operator's ServiceMonitor, PodMonitor and
# PrometheusRule CRDs of the pinned version (PROMETHEUS_OPERATOR_VERSION below), copied on first
# use from its Go module (`go mod download` through the Go module proxy) into
# ~/.cache/tether/tools/prometheus-operator-crds-<version>/. The chart's monitoring objects are
# applied against them on the local cluster (tests/e2e/test_alerts_operator.py); the module's
# config generator (pkg/prometheus/promcfg.go) is what tests/e2e/_monitoring.py follows.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Not in versions.env: every assignment there is part of the Kubernetes binary cache key.
PROMETHEUS_OPERATOR_VERSION=v0.85.0

MOD=github.com/prometheus-operator/prometheus-operator
DIR="$TETHER_CACHE/tools/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
CRDS=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml
      monitoring.coreos.com_prometheusrules.yaml)
if [ -f "$DIR/${CRDS[2]}" ]; then echo "$DIR"; exit 0; fi
command -v go >/dev/null || die "Go is needed at /usr/local/go/bin/go to download $MOD"
mkdir -p "$(dirname "$DIR")"
exec 8>"$DIR.lock"
flock -w 600 8 || die "another download has held $DIR.lock for 10 minutes"
if [ ! -f "$DIR/${CRDS[2]}" ]; then
  log "Downloading $MOD@$PROMETHEUS_OPERATOR_VERSION for its CRDs (cached in $DIR)"
  export GOMODCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/mod" GOTOOLCHAIN=local GOFLAGS=
  # Outside any module: the download must not touch a go.mod.
  info="$(cd / && go mod download -json "$MOD@$PROMETHEUS_OPERATOR_VERSION")" \
    || die "go mod download $MOD@$PROMETHEUS_OPERATOR_VERSION failed (Go module proxy reachable?); nothing was installed"
  src="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$src/example/prometheus-operator-crd" ] \
    || die "no example/prometheus-operator-crd in $MOD@$PROMETHEUS_OPERATOR_VERSION (at '$src')"
  stage="$DIR.tmp"
  rm -rf "$stage" && mkdir -p "$stage"
  for crd in "${CRDS[@]}"; do
    install -m 0644 "$src/example/prometheus-operator-crd/$crd" "$stage/$crd"
  done
  rm -rf "$DIR" && mv "$stage" "$DIR"
fi
exec 8>&-
echo "$DIR"
