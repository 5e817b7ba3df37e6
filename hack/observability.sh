#!/usr/bin/env bash
# Print the path of `prometheus` or `alertmanager` (the one argument), extracting it on first use
# from Debian's `prometheus` / `prometheus-alertmanager` package into
# ~/.cache/tether/tools/<binary>-<package version>/. The package is downloaded, not installed, so
# no service is set up. The tests start them as subprocesses (tests/_obs.py, issue #11 item 3).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  prometheus) PKG=prometheus ;;
  alertmanager) PKG=prometheus-alertmanager ;;
  *) die "usage: hack/observability.sh prometheus|alertmanager" ;;
esac
BIN="$1"
# Debian's alertmanager reads its notification templates from this fixed path (its patch that
# de-blobs the embedded ones; the --template.default flag is gone since 0.24.0-5), and refuses
# its config without them. They are data, not a service: copied there from the package.
AM_SHARE=/usr/share/prometheus/alertmanager

candidate() { apt-cache policy "$PKG" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
version="$(candidate)"
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  version="$(candidate)"
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  die "apt knows no Debian package $PKG (is bookworm/main in the apt sources?)"
fi
# The cache key is the package version: a point release in bookworm gives a new directory.
DIR="$TETHER_CACHE/tools/$BIN-${version//[^A-Za-z0-9.+-]/_}"
install_templates() {
  [ "$BIN" = alertmanager ] && [ ! -f "$AM_SHARE/default.tmpl" ] || return 0
  { mkdir -p "$AM_SHARE" && cp "$DIR"/*.tmpl "$AM_SHARE/"; } 2>/dev/null \
    || die "Debian's alertmanager needs $AM_SHARE/default.tmpl: run hack/observability.sh alertmanager as root once"
}
if [ -x "$DIR/$BIN" ] && { [ "$BIN" != alertmanager ] || [ -f "$DIR/default.tmpl" ]; }; then
  install_templates; echo "$DIR/$BIN"; exit 0
fi
mkdir -p "$TETHER_CACHE/tools"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$PKG=$version" >/dev/null 2>&1) \
  || die "cannot download Debian's $PKG package ($version): check apt's network and sources"
dpkg-deb -x "$work"/"${PKG}"_*.deb "$work/root"
[ -x "$work/root/usr/bin/$BIN" ] || [ -x "$work/root/usr/bin/prometheus-alertmanager" ] \
  || die "Debian's $PKG $version has no usr/bin/$BIN"
mkdir -p "$work/out"
if [ -x "$work/root/usr/bin/$BIN" ]; then src="$work/root/usr/bin/$BIN"
else src="$work/root/usr/bin/prometheus-alertmanager"; fi
install -m 0755 "$src" "$work/out/$BIN"
"$work/out/$BIN" --version >/dev/null 2>&1 || die "the extracted $BIN does not run"
if [ "$BIN" = alertmanager ]; then
  cp "$work/root$AM_SHARE"/*.tmpl "$work/out/"
fi
rm -rf "$DIR" && mv "$work/out" "$DIR"
install_templates
echo "$DIR/$BIN"
