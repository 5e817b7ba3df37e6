#!/usr/bin/env bash
# Print the path of actionlint (the GitHub Actions workflow checker), building it on first use
# from its Go module into ~/.cache/tether/tools/actionlint-<version>/. With --shellcheck, print
# the path of the shellcheck actionlint runs on every `run:` script instead: from PATH, else
# extracted from Debian's package into ~/.cache/tether/tools (downloaded, not installed, so no
# root is needed). tests/unit/test_workflows.py runs both on .github/workflows.
#
#   hack/actionlint.sh               path of actionlint
#   hack/actionlint.sh --shellcheck  path of shellcheck
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Not in versions.env: every assignment there is part of the Kubernetes binary cache key.
ACTIONLINT_VERSION=v1.7.12
TOOLS="$TETHER_CACHE/tools"

shellcheck_path() {
  if command -v shellcheck >/dev/null 2>&1; then command -v shellcheck; return; fi
  local dest="$TOOLS/shellcheck"
  if [ -x "$dest" ]; then echo "$dest"; return; fi
  mkdir -p "$TOOLS"
  local work; work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  if ! (cd "$work" && apt-get download shellcheck >/dev/null 2>&1); then
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the lists as they are"
    (cd "$work" && apt-get download shellcheck >/dev/null 2>&1) \
      || die "cannot download Debian's shellcheck package (apt-get download shellcheck);" \
             "install shellcheck on PATH instead"
  fi
  dpkg-deb -x "$work"/shellcheck_*.deb "$work/root"
  install -m 0755 "$work/root/usr/bin/shellcheck" "$dest.new"
  "$dest.new" --version >/dev/null \
    || die "the extracted $dest.new does not run (missing libffi8 or libgmp10?)"
  mv "$dest.new" "$dest"
  echo "$dest"
}

actionlint_path() {
  go_tool "$TOOLS/actionlint-$ACTIONLINT_VERSION" actionlint \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
    "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" "" -version
}

case "${1:-}" in
  "") actionlint_path ;;
  --shellcheck) shellcheck_path ;;
  *) die "unknown argument $1 (expected nothing or --shellcheck)" ;;
esac
