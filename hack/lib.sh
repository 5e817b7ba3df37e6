# shellcheck shell=bash
# Shared helpers for hack/*.sh. Sourced, never executed.
# Everything the scripts build or run lives under TETHER_CACHE (outside the repo),
# so a fresh clone never carries a binary and `git status` stays clean.

set -Eeuo pipefail
# No silent exits under `set -e`: name the command and line that failed.
trap 'echo "ERROR: ${BASH_SOURCE[0]}:$LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

TETHER_CACHE="${TETHER_CACHE:-$HOME/.cache/tether}"
K8S_BIN_DIR="${K8S_BIN_DIR:-$TETHER_CACHE/k8s-$K8S_VERSION/bin}"
CLUSTER_DIR="${CLUSTER_DIR:-$TETHER_CACHE/cluster}"
# The images' tag: pyproject's version, a fixed tag, so IfNotPresent works with no registry.
TETHER_VERSION="$(awk -F'"' '/^version *=/ {print $2; exit}' "$REPO_ROOT/pyproject.toml")"
[ -n "$TETHER_VERSION" ] || die "no version = \"...\" line in pyproject.toml's [project] table"
export PATH="/usr/local/go/bin:$PATH"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# sha256 of a file's content, or of several files concatenated (cache keys).
sha_of() { cat "$@" | sha256sum | cut -c1-64; }

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (it runs containerd and the kubelet); re-run with sudo"
}

# Install Debian packages only when one is missing, so re-runs cost nothing and
# `apt-get update` runs at most once per script run.
apt_ensure() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "Installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "apt-get update failed; Debian's mirror must be reachable to install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || die "apt-get install ${missing[*]} failed"
}

# Print the path of a Go tool built once with `go install` into DIR (tools under
# TETHER_CACHE/tools): under a lock, so two test targets at once build it once; with the Go
# caches hack/k8s-binaries.sh fills, so downloads and compiles are shared; by rename, so a
# half-built tool is never found. The built binary must print EXPECT when run with the check
# arguments (any output when EXPECT is empty).
#   go_tool DIR BINARY MODULE/CMD@VERSION LDFLAGS EXPECT CHECK-ARG...
go_tool() {
  local dir="$1" bin="$2" pkg="$3" ldflags="$4" expect="$5" got stage="$1.tmp"
  shift 5
  if [ -x "$dir/$bin" ]; then echo "$dir/$bin"; return 0; fi
  command -v go >/dev/null || die "Go is needed at /usr/local/go/bin/go to build $pkg"
  mkdir -p "$(dirname "$dir")"
  exec 8>"$dir.lock"
  flock -w 900 8 || die "another build has held $dir.lock for 15 minutes"
  if [ ! -x "$dir/$bin" ]; then
    log "Building $pkg (go install, cached in $dir)"
    rm -rf "$stage" && mkdir -p "$stage"
    GOCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/build" \
      GOMODCACHE="${TETHER_GO_CACHE:-$TETHER_CACHE/go}/mod" GOTOOLCHAIN=local CGO_ENABLED=0 \
      GOFLAGS=-mod=mod GOBIN="$stage" nice -n 10 go install -trimpath \
      -ldflags "-s -w $ldflags" "$pkg" || die "go install of $pkg failed (see the output above)"
    got="$("$stage/$bin" "$@")" || die "the built $stage/$bin does not run"
    [ -z "$expect" ] || [ "$got" = "$expect" ] \
      || die "the built $bin says it is $got, not $expect"
    rm -rf "$dir" && mv "$stage" "$dir"
  fi
  exec 8>&-
  echo "$dir/$bin"
}
