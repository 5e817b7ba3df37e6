#!/usr/bin/env bash
# Build (once) a minimal Debian bookworm root filesystem, our offline twin of
# docker.io/library/debian:bookworm-slim (Debian's own images are debootstrap minbase
# too, with docs and man pages left out), and print its path. hack/images.sh commits it
# under that name so images/*/Dockerfile build here unchanged. Cached under
# ~/.cache/tether/rootfs keyed by this script's content; a directory without its
# .complete marker is never used.
#
# The mirror is the one this machine's apt uses (DEBIAN_MIRROR overrides it): no host
# is written into the repo, and a machine behind a mirror or proxy builds through it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
KEY="$(sha_of "${BASH_SOURCE[0]}" | cut -c1-16)"
DEST="$TETHER_CACHE/rootfs/debian-$SUITE-$KEY"

# The first enabled `deb` source for $SUITE's main component in apt's configuration,
# one-line (sources.list, *.list) or deb822 (*.sources) format.
apt_mirror() {
  local f m
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m="$(awk -v suite="$SUITE" -v deb822="$([[ $f == *.sources ]] && echo 1)" "$APT_SOURCE_AWK" "$f")"
    [ -n "$m" ] && { echo "$m"; return 0; }
  done
}
# shellcheck disable=SC2016
APT_SOURCE_AWK='
  function flush() {  # end of a deb822 stanza
    if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") \
        && (" " comps " ") ~ / main / && enabled != "no" && uris != "") {
      split(uris, u, " "); print u[1]; done = 1; exit
    }
    types = suites = comps = uris = enabled = ""
  }
  deb822 && /^[ \t]*$/ { flush(); next }
  deb822 && /^#/ { next }
  deb822 {
    key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
    if (key == "types") types = $0; else if (key == "suites") suites = $0
    else if (key == "components") comps = $0; else if (key == "uris") uris = $0
    else if (key == "enabled") enabled = tolower($0)
    next
  }
  $1 == "deb" {  # deb [options] uri suite components...
    i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
    if ($(i + 1) != suite) next
    for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; done = 1; exit }
  }
  END { if (deb822 && !done) flush() }'

if [ -f "$DEST/.complete" ]; then echo "$DEST/rootfs"; exit 0; fi
need_root "debootstrap"
apt_ensure debootstrap
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"
[ -n "$MIRROR" ] || die "no enabled 'deb' source for Debian $SUITE main in /etc/apt/sources.list(.d); add one or set DEBIAN_MIRROR"

mkdir -p "$TETHER_CACHE/rootfs"
exec 8>"$TETHER_CACHE/rootfs/.lock"
flock -w 1800 8 || die "another rootfs build has held $TETHER_CACHE/rootfs/.lock for 30 minutes"
if [ -f "$DEST/.complete" ]; then echo "$DEST/rootfs"; exit 0; fi

rm -rf "$DEST"  # a partial directory from an interrupted run
mkdir -p "$DEST"
log "Bootstrapping Debian $SUITE (minbase) into $DEST from $MIRROR"
t0=$(date +%s)
nice -n 10 debootstrap --variant=minbase "$SUITE" "$DEST/rootfs" "$MIRROR" \
  > "$DEST/debootstrap.log" 2>&1 \
  || die "debootstrap failed; see $DEST/debootstrap.log (is $MIRROR reachable?)"
R="$DEST/rootfs"
# As in the slim image: packages installed later (the Dockerfiles' RUN apt-get) leave
# out docs, man pages and translations, keeping the copyright files.
cat > "$R/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# Nor apt's binary caches or downloaded packages (the slim image's docker-clean).
cat > "$R/etc/apt/apt.conf.d/slim" <<'EOF'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
find "$R/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
rm -rf "$R"/usr/share/{man,info}/* "$R"/usr/share/locale/*/
# Package caches and the build host's resolver are build-time only.
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* "$R"/var/log/*.log
: > "$R/etc/resolv.conf"
touch "$DEST/.complete"
log "Root filesystem ready in $(( $(date +%s) - t0 ))s"
echo "$R"
