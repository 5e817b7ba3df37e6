#!/usr/bin/env bash
# Build (once) a minimal Debian bookworm root filesystem with Python 3.11, the base of
# every project image, and print its path. Cached under ~/.cache/tether/rootfs keyed
# by this script's content; a directory without its .complete marker is never used.
#
# Why debootstrap: no registry means no `FROM python:3.11-slim`; Debian's mirror is
# reachable, and minbase + python3 is close to what the slim image holds.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-venv,ca-certificates,tini
KEY="$(sha_of "${BASH_SOURCE[0]}" | cut -c1-16)"
DEST="$TETHER_CACHE/rootfs/python-$SUITE-$KEY"

if [ -f "$DEST/.complete" ]; then echo "$DEST/rootfs"; exit 0; fi
need_root "debootstrap"
apt_ensure debootstrap

mkdir -p "$TETHER_CACHE/rootfs"
exec 8>"$TETHER_CACHE/rootfs/.lock"
flock -w 1800 8 || die "another rootfs build has held $TETHER_CACHE/rootfs/.lock for 30 minutes"
if [ -f "$DEST/.complete" ]; then echo "$DEST/rootfs"; exit 0; fi

rm -rf "$DEST"  # a partial directory from an interrupted run
mkdir -p "$DEST"
log "Bootstrapping Debian $SUITE (minbase + $PACKAGES) into $DEST from $MIRROR"
t0=$(date +%s)
nice -n 10 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$DEST/rootfs" "$MIRROR" \
  > "$DEST/debootstrap.log" 2>&1 \
  || die "debootstrap failed; see $DEST/debootstrap.log (is $MIRROR reachable?)"
# Package caches are build-time only; images should not carry them.
rm -rf "$DEST"/rootfs/var/cache/apt/archives/*.deb "$DEST"/rootfs/var/lib/apt/lists/*
touch "$DEST/.complete"
log "Root filesystem ready in $(( $(date +%s) - t0 ))s"
echo "$DEST/rootfs"
