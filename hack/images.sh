#!/usr/bin/env bash
# Build the node's images from images/ with buildah, offline (the seven Python images are
# targets of images/python/Dockerfile; pause and the provisioner have their own), as one OCI
# layout tar for `ctr images import`, and print the tar's path. The Dockerfiles are the
# only recipe: what runs here is what `docker build` runs on a user's machine.
#
# Offline: the Dockerfiles start FROM docker.io/library/debian:bookworm-slim, which here
# is our debootstrapped Debian (hack/rootfs.sh) committed under that name; nothing is
# pulled (--pull=never). RUN steps reach Debian's mirror and PyPI the way this machine
# does: the host's CA bundle and pip settings are mounted for the build only
# (hack/image_build.py pip-conf), never baked in. Images are docker.io/tether/<name>
# tagged with pyproject's version.
#
# Caches, all under ~/.cache/tether: buildah's store with its layer cache (--layers: a
# code change rebuilds only the app layer, a pyproject.toml change the dependency layer),
# pip's cache, and the tar in images/<key>, where the key covers every file the builds
# read, so an unchanged repo costs nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root "building images (buildah)"
apt_ensure buildah runc rsync
ROOTFS="$("$HACK_DIR/rootfs.sh")"
# cluster-up has just verified the binaries; a direct `make images` checks here.
[ "${TETHER_BINARIES_VERIFIED:-}" = 1 ] || "$HACK_DIR/k8s-binaries.sh"

IMAGES=(pause local-path-provisioner base sidecar operator agent scripted-model fault-tools evaluator)
VERSION="$TETHER_VERSION"
SOURCE="$(git -C "$REPO_ROOT" config --get remote.origin.url || true)"
PROVISIONER="$K8S_BIN_DIR/local-path-provisioner"
# What the Dockerfiles COPY from the repo, tracked or untracked (not ignored); the
# rest of the repo (tests, docs, hack) can change without a rebuild.
CONTEXT_INPUTS=(pyproject.toml README.md images api/tether_api sidecar/tether_sidecar
  sdk/tether_agent cli/tether_cli operator/tether_operator examples/tether_examples
  evaluator/tether_eval hack/tools/pause)
# The revision label: the last commit that changed what the images are built from
# (+dirty for local edits), not HEAD, so a commit to tests or docs rebuilds nothing.
REVISION="$(git -C "$REPO_ROOT" log -1 --format=%H -- "${CONTEXT_INPUTS[@]}" 2>/dev/null || true)"
REVISION="${REVISION:-unknown}"
if [ -n "$(git -C "$REPO_ROOT" status --porcelain -- "${CONTEXT_INPUTS[@]}" 2>/dev/null)" ]; then
  REVISION="$REVISION-dirty"
fi

context_files() {  # NUL-separated, sorted
  (cd "$REPO_ROOT" && git ls-files -co --exclude-standard -z -- "${CONTEXT_INPUTS[@]}" | sort -z)
}

KEY="$( { (cd "$REPO_ROOT" && context_files | xargs -0 -r sha256sum); echo "$ROOTFS";
          echo "$VERSION $REVISION $SOURCE"; buildah --version;
          sha_of "${BASH_SOURCE[0]}" "$HACK_DIR/image_build.py"; sha256sum "$PROVISIONER"; } \
        | sha256sum | cut -c1-16)"
IMG_ROOT="$TETHER_CACHE/images"
OUT="$IMG_ROOT/$KEY"
if [ -f "$OUT/.complete" ]; then echo "$OUT/images.tar"; exit 0; fi

mkdir -p "$IMG_ROOT"
exec 7>"$IMG_ROOT/.lock"
flock -w 1800 7 || die "another image build has held $IMG_ROOT/.lock for 30 minutes"
[ -f "$OUT/.complete" ] && { echo "$OUT/images.tar"; exit 0; }
rm -rf "$OUT" && mkdir -p "$OUT"
WORK="$OUT/work"
LOG="$OUT/build.log"
BUILDAH=(buildah --root "$TETHER_CACHE/buildah" --runroot /run/tether-buildah --storage-driver overlay)
t0=$(date +%s)

# The base every Dockerfile names, committed from the rootfs when the rootfs changed.
# A new base has a new ID, so every cached layer above it is rebuilt.
commit_base() {
  local stamp="$TETHER_CACHE/buildah.base" want c mnt
  want="$ROOTFS docker.io/library/debian:bookworm-slim"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
     && "${BUILDAH[@]}" inspect --type image docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
    return 0
  fi
  log "Committing $ROOTFS as docker.io/library/debian:bookworm-slim"
  c="$("${BUILDAH[@]}" from scratch)"
  mnt="$("${BUILDAH[@]}" mount "$c")"
  cp -a "$ROOTFS/." "$mnt/"  # cp -a: owners, modes and links exactly as debootstrap made them
  "${BUILDAH[@]}" umount "$c" >/dev/null
  "${BUILDAH[@]}" config --cmd bash --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  "${BUILDAH[@]}" commit -q --rm --identity-label=false "$c" docker.io/library/debian:bookworm-slim >/dev/null
  echo "$want" > "$stamp"
}

# The build context: exactly the files the key covers (no __pycache__, no .venv).
stage_contexts() {
  mkdir -p "$WORK/repo" "$WORK/provisioner"
  (cd "$REPO_ROOT" && context_files | rsync -a --from0 --files-from=- ./ "$WORK/repo/")
  cp "$PROVISIONER" "$WORK/provisioner/local-path-provisioner"
}

# --network=host: RUN steps use the host's own route to the mirror and PyPI, and buildah
# never sets up its default network, a bridge on 10.88.0.0/16: the pod subnet, whose
# route it would take from cni0 (hack/cluster/node.sh refuses to start then).
build_image() {  # name
  local ctx="$WORK/repo" file="images/$1/Dockerfile" target=() s0
  [ "$1" = local-path-provisioner ] && ctx="$WORK/provisioner"
  # The Python images are targets of one Dockerfile; the others have one each.
  if [ ! -f "$WORK/repo/$file" ]; then file=images/python/Dockerfile target=(--target "$1"); fi
  s0=$(date +%s)
  echo "=== $1" >> "$LOG"
  nice -n 10 "${BUILDAH[@]}" build --layers --pull=never --network=host --identity-label=false \
    --volume "$WORK/pip.conf:/etc/pip.conf:ro" --volume "$HOST_CA:/run/tether-build/ca.pem:ro" \
    --volume "$TETHER_CACHE/pip:/root/.cache/pip" \
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" --build-arg SOURCE="$SOURCE" \
    -f "$WORK/repo/$file" "${target[@]}" -t "docker.io/tether/$1:$VERSION" "$ctx" >> "$LOG" 2>&1 \
    || { tail -n 30 "$LOG" >&2; die "building $file ${target[*]} failed; the whole log is $LOG"; }
  log "Built docker.io/tether/$1:$VERSION in $(( $(date +%s) - s0 ))s"
}

# One OCI layout for all images (shared layers stored once), uncompressed: it is
# imported on this machine, and gzip would cost more CPU than it saves. Pushed in
# parallel, each image to a layout of its own, then merged (hack/image_build.py merge).
export_layout() {
  local n pids=() layouts=()
  mkdir -p "$WORK/push"
  for n in "${IMAGES[@]}"; do
    "${BUILDAH[@]}" push -q --disable-compression "docker.io/tether/$n:$VERSION" \
      "oci:$WORK/push/$n:$n" >> "$LOG" 2>&1 &
    pids+=($!); layouts+=("$WORK/push/$n")
  done
  for n in "${!pids[@]}"; do
    wait "${pids[$n]}" || die "buildah push of docker.io/tether/${IMAGES[$n]}:$VERSION failed; see $LOG"
  done
  python3 "$HACK_DIR/image_build.py" merge "$WORK/oci" "$VERSION" "${layouts[@]}"
  tar -C "$WORK/oci" -cf "$OUT/images.tar" .
}

# The host may reach PyPI through a TLS-inspecting proxy whose CA only its bundle has.
HOST_CA="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
[ -r "$HOST_CA" ] || die "the CA bundle $HOST_CA (PIP_CERT/SSL_CERT_FILE) is not readable; pip in the build needs it"
mkdir -p "$WORK" "$TETHER_CACHE/pip"
python3 "$HACK_DIR/image_build.py" pip-conf "$WORK/pip.conf" /run/tether-build/ca.pem
# The layer cache grows with every code change (each build leaves its app layers behind) and
# nothing in buildah bounds it: past the cap it is emptied, and this one build runs cold.
STORE_CAP_MB="${TETHER_BUILDAH_STORE_CAP_MB:-8192}"
store_mb=0  # a new machine has no store yet (du on a missing path fails the pipeline)
if [ -d "$TETHER_CACHE/buildah" ]; then store_mb="$(du -sm "$TETHER_CACHE/buildah" | cut -f1)"; fi
if [ "$store_mb" -gt "$STORE_CAP_MB" ]; then
  log "The buildah store holds ${store_mb} MB (cap ${STORE_CAP_MB}); emptying it, so this build is cold"
  "${BUILDAH[@]}" rmi --all --force >> "$LOG" 2>&1 || die "emptying the buildah store failed; see $LOG"
fi
commit_base
stage_contexts
for name in "${IMAGES[@]}"; do build_image "$name"; done
export_layout
rm -rf "$WORK"
echo "$KEY" > "$OUT/key"
touch "$OUT/.complete"
log "Images built in $(( $(date +%s) - t0 ))s: $OUT/images.tar"
# Keep only this build: older keys are dead weight once a newer one is complete.
find "$IMG_ROOT" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -exec rm -rf {} +
echo "$OUT/images.tar"
