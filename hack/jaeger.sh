#!/usr/bin/env bash
# Print the path of a Jaeger all-in-one of the pinned version (JAEGER_VERSION below),
# building it on first use from its Go module into
# ~/.cache/tether/tools/jaeger-<version>/. Its go.mod has a replace directive, which
# `go install module@version` refuses, so it is built from a small wrapper module that requires
# it (`go get -tool`), as hack/k8s-binaries.sh builds Kubernetes. A jaeger on PATH is not used:
# the tests depend on this version's query API.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Not in versions.env: every assignment there is part of the Kubernetes binary cache key.
# cmd/jaeger is the OTLP-native all-in-one (in-memory storage, OTLP on 4317/4318, query API on
# 16686): the tracing backend the end-to-end trace tests query (issue #11).
JAEGER_VERSION=v1.76.0

DIR="$TETHER_CACHE/tools/jaeger-$JAEGER_VERSION"
PKG=github.com/jaegertracing/jaeger/cmd/jaeger
if [ -x "$DIR/jaeger" ]; then echo "$DIR/jaeger"; exit 0; fi
command -v go >/dev/null || die "Go is needed at /usr/local/go/bin/go to build Jaeger"
mkdir -p "$(dirname "$DIR")"
exec 8>"$DIR.lock"
flock -w 1800 8 || die "another build has held $DIR.lock for 30 minutes"
if [ ! -x "$DIR/jaeger" ]; then
  log "Building Jaeger $JAEGER_VERSION (cached in $DIR; ~6 min of CPU the first time)"
  stage="$DIR.tmp"
  rm -rf "$stage" && mkdir -p "$stage/src"
  export GOCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/build" \
    GOMODCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/mod" GOTOOLCHAIN=local CGO_ENABLED=0 \
    GOFLAGS=-mod=mod
  (cd "$stage/src" && go mod init tether.local/build/jaeger >/dev/null 2>&1 \
    && go get -tool "$PKG@$JAEGER_VERSION" \
    && nice -n 10 go build -trimpath -o "$stage/jaeger" -ldflags "-s -w \
      -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" "$PKG") \
    || die "building Jaeger $JAEGER_VERSION failed (see the output above); nothing was installed"
  got="$("$stage/jaeger" version 2>/dev/null)" || die "the built jaeger does not run"
  case "$got" in *"$JAEGER_VERSION"*) ;; *) die "the built jaeger says $got, not $JAEGER_VERSION";; esac
  rm -rf "$stage/src" && rm -rf "$DIR" && mv "$stage" "$DIR"
fi
exec 8>&-
echo "$DIR/jaeger"
