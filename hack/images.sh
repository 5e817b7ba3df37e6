#!/usr/bin/env bash
# Build the node's images offline as one OCI layout + tar, and print the tar's path:
#   tether/pause                  our own pause binary (hack/tools/pause/pause.c)
#   tether/local-path-provisioner the provisioner binary from hack/k8s-binaries.sh
#   tether/{base,sidecar,operator,agent,scripted-model,fault-tools}
#       one Python image (Debian rootfs + /opt/tether venv with `pip install` of this
#       repo, with the [operator,agent] extras: kopf for the operator, openai for the agent); same layers,
#       different default entrypoints.
# All tags are :latest; pods use imagePullPolicy: Never. Cached under
# ~/.cache/tether/images/<key>, where the key covers the repo's files, so a code
# change rebuilds only the app layer. images/*/Dockerfile are the same recipes for
# people who have Docker.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root "building images (chroot, umoci unpack with ownership)"
apt_ensure umoci gcc libc6-dev rsync
ROOTFS="$("$HACK_DIR/rootfs.sh")"
# cluster-up has just verified the binaries; a direct `make images` checks here.
[ "${TETHER_BINARIES_VERIFIED:-}" = 1 ] || "$HACK_DIR/k8s-binaries.sh"

APP_IMAGES=(sidecar operator agent scripted-model fault-tools)
# Default entrypoint per image: the first console script present in the venv, so the
# image works whichever entry points the repo has when it is built; pods in tests set
# `command` explicitly anyway.
declare -A ENTRY_CANDIDATES=(
  [sidecar]="tether-sidecar"
  [operator]="tether-operator kopf"
  [agent]="tether-agent tether-reference-agent"
  [scripted-model]="tether-scripted-model"
  [fault-tools]="tether-fault-tools"
)

# What `pip install` of the repo reads: the build config and the packaged code.
# Tests, docs and hack/ are left out so editing them does not rebuild the images.
WHEEL_INPUTS=(pyproject.toml README.md LICENSE api sidecar sdk cli operator examples)

wheel_files() {  # NUL-separated, tracked + untracked (not ignored), sorted
  (cd "$REPO_ROOT" && git ls-files -co --exclude-standard -z -- "${WHEEL_INPUTS[@]}" | sort -z)
}

repo_key() {
  (cd "$REPO_ROOT" && wheel_files | xargs -0 -r sha256sum | sha256sum | cut -c1-64)
}

KEY="$( { repo_key; echo "$ROOTFS"; sha_of "${BASH_SOURCE[0]}" "$HACK_DIR/tools/pause/pause.c";
          sha256sum "$K8S_BIN_DIR/local-path-provisioner"; } | sha256sum | cut -c1-16)"
IMG_ROOT="$TETHER_CACHE/images"
OUT="$IMG_ROOT/$KEY"
if [ -f "$OUT/.complete" ]; then echo "$OUT/images.tar"; exit 0; fi

mkdir -p "$IMG_ROOT"
exec 7>"$IMG_ROOT/.lock"
flock -w 1800 7 || die "another image build has held $IMG_ROOT/.lock for 30 minutes"
[ -f "$OUT/.complete" ] && { echo "$OUT/images.tar"; exit 0; }

WORK="$OUT/work"
LAYOUT="$WORK/oci"
CHROOT_MOUNTS=()
cleanup() {  # unmount in reverse order; a leftover bind mount would pin /dev
  local i; for (( i=${#CHROOT_MOUNTS[@]}-1; i>=0; i-- )); do umount -l "${CHROOT_MOUNTS[$i]}" 2>/dev/null || true; done
  CHROOT_MOUNTS=()
}
trap cleanup EXIT
rm -rf "$OUT" && mkdir -p "$WORK"
t0=$(date +%s)

# A scratch image holding single files (pause, provisioner): no shell, no libc needed.
single_binary_image() {  # tag src dest-path
  local b="$WORK/bundle-$1"
  umoci new --image "$LAYOUT:$1"
  umoci unpack --image "$LAYOUT:$1" "$b" >/dev/null
  install -D -m 0755 "$2" "$b/rootfs$3"
  umoci repack --image "$LAYOUT:$1" "$b"
  umoci config --image "$LAYOUT:$1" --config.entrypoint "$3" --clear=config.cmd \
    --config.workingdir / --author tether
  rm -rf "$b"
}

umoci init --layout "$LAYOUT"

log "Building tether/pause"
gcc -static -Os -Wall -Wextra -o "$WORK/pause" "$HACK_DIR/tools/pause/pause.c" \
  || die "compiling hack/tools/pause/pause.c failed (gcc and libc6-dev are needed)"
single_binary_image pause "$WORK/pause" /pause
log "Building tether/local-path-provisioner"
single_binary_image local-path-provisioner "$K8S_BIN_DIR/local-path-provisioner" /usr/bin/local-path-provisioner

log "Building tether/base layer from $ROOTFS"
B="$WORK/bundle-app"
umoci new --image "$LAYOUT:base"
umoci unpack --image "$LAYOUT:base" "$B" >/dev/null
rsync -a "$ROOTFS/" "$B/rootfs/"
nice -n 10 umoci repack --refresh-bundle --image "$LAYOUT:base" "$B"

log "Installing the repo into /opt/tether (pip install of the repo's wheel)"
SRC="$B/rootfs/tmp/tether-src"
mkdir -p "$SRC" "$TETHER_CACHE/pip"
(cd "$REPO_ROOT" && wheel_files | rsync -a --from0 --files-from=- ./ "$SRC/")
for m in proc dev sys; do mount --bind "/$m" "$B/rootfs/$m"; CHROOT_MOUNTS+=("$B/rootfs/$m"); done
mkdir -p "$B/rootfs/root/.cache/pip"
mount --bind "$TETHER_CACHE/pip" "$B/rootfs/root/.cache/pip"; CHROOT_MOUNTS+=("$B/rootfs/root/.cache/pip")
cp -L /etc/resolv.conf "$B/rootfs/etc/resolv.conf"
# The host may reach PyPI through a TLS-inspecting proxy whose CA only the host's
# bundle has: lend that bundle to pip for the build, without baking it into the image.
HOST_CA="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
touch "$B/rootfs/tmp/host-ca.pem"
mount --bind -o ro "$HOST_CA" "$B/rootfs/tmp/host-ca.pem"; CHROOT_MOUNTS+=("$B/rootfs/tmp/host-ca.pem")
nice -n 10 env -u PIP_FIND_LINKS PIP_CERT=/tmp/host-ca.pem SSL_CERT_FILE=/tmp/host-ca.pem \
  REQUESTS_CA_BUNDLE=/tmp/host-ca.pem HOME=/root chroot "$B/rootfs" /bin/sh -ec '
  python3 -m venv /opt/tether
  /opt/tether/bin/pip install -q --disable-pip-version-check "/tmp/tether-src[operator,agent]"
  /opt/tether/bin/python -c "import importlib.metadata as m; print(\"Installed tether\", m.version(\"tether\"))"
' > "$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log" >&2; die "pip install of the repo failed in the image rootfs (log above)"; }
cleanup
rm -rf "$SRC" "$B/rootfs/root/.cache" "$B/rootfs/tmp/host-ca.pem" && : > "$B/rootfs/etc/resolv.conf"
find "$B/rootfs/opt/tether" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
nice -n 10 umoci repack --image "$LAYOUT:app" "$B"

ENV_PATH="PATH=/opt/tether/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
for name in "${APP_IMAGES[@]}"; do
  entry=(/opt/tether/bin/python)
  for c in ${ENTRY_CANDIDATES[$name]}; do
    [ -x "$B/rootfs/opt/tether/bin/$c" ] && { entry=("/opt/tether/bin/$c"); break; }
  done
  [ "${entry[0]}" = /opt/tether/bin/python ] && log "No console script for $name yet; its entrypoint is python"
  umoci config --image "$LAYOUT:app" --tag "$name" --config.env "$ENV_PATH" \
    --config.entrypoint "${entry[0]}" --clear=config.cmd --config.workingdir / \
    --config.env PYTHONUNBUFFERED=1 --author tether
done
umoci config --image "$LAYOUT:app" --tag tether-base --config.env "$ENV_PATH" \
  --config.env PYTHONUNBUFFERED=1 --config.cmd /bin/bash --author tether
rm -rf "$B"
# Intermediate tags; their blobs stay while a final tag uses them.
umoci rm --image "$LAYOUT:base"; umoci rm --image "$LAYOUT:app"
umoci gc --layout "$LAYOUT"

# containerd names an imported OCI manifest after its io.containerd.image.name
# annotation; without it `ctr import` would need one --base-name per image.
python3 - "$LAYOUT/index.json" <<'PY'
import json, sys
path = sys.argv[1]
index = json.load(open(path))
for m in index["manifests"]:
    ann = m.setdefault("annotations", {})
    tag = ann["org.opencontainers.image.ref.name"]
    repo = "base" if tag == "tether-base" else tag
    ann["io.containerd.image.name"] = f"docker.io/tether/{repo}:latest"
json.dump(index, open(path, "w"))
PY
tar -C "$LAYOUT" -cf "$OUT/images.tar" .
rm -rf "$WORK"
echo "$KEY" > "$OUT/key"
touch "$OUT/.complete"
log "Images built in $(( $(date +%s) - t0 ))s: $OUT/images.tar"
# Keep only this build: older keys are dead weight once a newer one is complete.
find "$IMG_ROOT" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -exec rm -rf {} +
echo "$OUT/images.tar"
