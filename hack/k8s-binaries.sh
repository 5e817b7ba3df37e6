#!/usr/bin/env bash
# Build the Kubernetes binaries the test cluster needs from their Go modules, into
# ~/.cache/tether/k8s-<version>/bin, and reuse them when a verified build is there.
#
#   hack/k8s-binaries.sh            build what is missing or corrupt, then verify
#   hack/k8s-binaries.sh --verify   only verify; exit 1 if anything is missing/corrupt
#   hack/k8s-binaries.sh --print    print the bin dir
#
# Why from modules: this machine reaches the Go module proxy but not GitHub releases
# or image registries. A successful build writes MANIFEST (sha256 of every binary +
# a key of the inputs); anything that does not match it is rebuilt, never used.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Overridable so a test can use a scratch TETHER_CACHE with the warm Go caches.
GO_CACHE_ROOT="${TETHER_GO_CACHE:-$TETHER_CACHE/go}"
export GOCACHE="$GO_CACHE_ROOT/build" GOMODCACHE="$GO_CACHE_ROOT/mod"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
OUT_ROOT="$(dirname "$K8S_BIN_DIR")"
MANIFEST="$OUT_ROOT/MANIFEST"
BUILD_ROOT="$TETHER_CACHE/build"
# Bump when a build flag below changes: editing comments here must not cost a rebuild.
RECIPE=1
# Each group's key covers the recipe and its own inputs only, so bumping one version
# (or adding a group) rebuilds that group and nothing else.
declare -A GROUP_INPUTS=(
  [kubernetes]="K8S_VERSION"
  [etcd]="ETCD_VERSION tools/etcd/main.go"
  [kwok]="KWOK_VERSION"
  [helm]="HELM_VERSION"
  [local-path-provisioner]="LOCAL_PATH_PROVISIONER_VERSION"
  [coredns]="COREDNS_VERSION tools/coredns/main.go"
)
group_key() {  # group -> sha256 of its inputs
  local i
  { echo "recipe $RECIPE"
    for i in ${GROUP_INPUTS[$1]}; do
      if [[ "$i" == */* ]]; then cat "$HACK_DIR/$i"; else echo "$i=${!i}"; fi
    done; } | sha256sum | cut -c1-64
}

# group -> binaries it produces (a corrupt binary rebuilds its whole group).
declare -A GROUP_BINS=(
  [kubernetes]="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
  [etcd]="etcd"
  [kwok]="kwok"
  [helm]="helm"
  [local-path-provisioner]="local-path-provisioner"
  [coredns]="coredns"
)
GROUPS_ORDER=(kubernetes etcd kwok helm local-path-provisioner coredns)

manifest_ok_for() {  # binary name -> 0 if it matches the manifest
  local line; line="$(grep -E "  $1\$" "$MANIFEST")" || return 1
  (cd "$K8S_BIN_DIR" && echo "$line" | sha256sum -c --quiet --status -)
}

group_ok() {
  [ -f "$MANIFEST" ] && grep -qx "# inputs $1 $(group_key "$1")" "$MANIFEST" || return 1
  local b; for b in ${GROUP_BINS[$1]}; do manifest_ok_for "$b" || return 1; done
}

# A throwaway module in the cache that requires $2@$3; Go resolves the rest.
new_module() {  # name module version
  local dir="$BUILD_ROOT/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && go mod init "tether.local/build/$1" >/dev/null 2>&1 \
    && go mod edit -go=1.24 -require="$2@$3")
  echo "$dir"
}

go_build() {  # dir ldflags pkgs...
  local dir="$1" ldflags="$2"; shift 2
  local stage="$dir/out"; mkdir -p "$stage"
  (cd "$dir" && nice -n 10 go build -trimpath -ldflags "-s -w $ldflags" -o "$stage/" "$@") \
    || die "go build failed in $dir (see the compiler output above); nothing was installed"
  mkdir -p "$K8S_BIN_DIR"
  local f; for f in "$stage"/*; do mv -f "$f" "$K8S_BIN_DIR/"; done
}

build_kubernetes() {
  local dir minor gomod v="$K8S_VERSION"
  dir="$(new_module kubernetes k8s.io/kubernetes "$v")"
  minor="${v#v1.}"
  # k8s.io/kubernetes requires its staging modules as v0.0.0 with ./staging replaces,
  # which only work inside its own repo; each is published as k8s.io/<m> v0.<minor>.
  gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$v" | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || die "cannot download k8s.io/kubernetes@$v from the Go module proxy"
  local m args=()
  for m in $(sed -nE 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\1#p' "$gomod"); do
    args+=("-replace=$m=$m@v0.$minor")
  done
  [ ${#args[@]} -gt 10 ] || die "found no staging replaces in $gomod; did its layout change?"
  (cd "$dir" && go mod edit "${args[@]}")
  local ld="" p
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  # One invocation for all six so the compile cache is shared within one go build.
  go_build "$dir" "$ld" k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
}

build_etcd() {
  local dir; dir="$(new_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION")"
  cp "$HACK_DIR/tools/etcd/main.go" "$dir/"
  # The binary is named after the module path's last element: etcd.
  go_build "$dir" "" .
}

build_kwok() {
  local dir; dir="$(new_module kwok sigs.k8s.io/kwok "$KWOK_VERSION")"
  go_build "$dir" "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" sigs.k8s.io/kwok/cmd/kwok
}

build_helm() {
  local dir; dir="$(new_module helm helm.sh/helm/v3 "$HELM_VERSION")"
  go_build "$dir" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

build_coredns() {
  local dir; dir="$(new_module coredns github.com/coredns/coredns "$COREDNS_VERSION")"
  cp "$HACK_DIR/tools/coredns/main.go" "$dir/"
  go_build "$dir" "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" .
}

build_local-path-provisioner() {
  local dir; dir="$(new_module local-path-provisioner github.com/rancher/local-path-provisioner \
    "$LOCAL_PATH_PROVISIONER_VERSION")"
  go_build "$dir" "-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner
}

# MANIFEST: for each group that built completely, "# inputs <group> <key>" and
# "sha256  binary" per binary. Rewritten by rename, so a half-written one is never read.
manifest_set_group() {  # group add|drop
  local tmp="$MANIFEST.tmp" b pattern
  pattern="^# inputs $1 |$(printf '  %s$|' ${GROUP_BINS[$1]})"; pattern="${pattern%|}"
  { if [ -f "$MANIFEST" ]; then grep -vE "$pattern" "$MANIFEST" || true; fi
    if [ "$2" = add ]; then
      echo "# inputs $1 $(group_key "$1")"
      for b in ${GROUP_BINS[$1]}; do (cd "$K8S_BIN_DIR" && sha256sum "$b"); done
    fi; } > "$tmp"
  mv -f "$tmp" "$MANIFEST"
}

# Until the CoreDNS group, MANIFEST had one "# inputs <key>" line over all of
# versions.env. Adopt such a manifest once when that key still matches (same binaries,
# same inputs) instead of rebuilding Kubernetes; anything else is rebuilt as usual.
adopt_single_key_manifest() {
  [ -f "$MANIFEST" ] || return 0
  local old g tmp="$MANIFEST.tmp"
  old="$( { echo "recipe 1"; grep -E '^[A-Z_]+=' "$HACK_DIR/versions.env" | grep -v '^COREDNS_VERSION=';
            cat "$HACK_DIR/tools/etcd/main.go"; } | sha256sum | cut -c1-64)"
  grep -qx "# inputs $old" "$MANIFEST" || return 0
  { grep -vx "# inputs $old" "$MANIFEST"
    for g in kubernetes etcd kwok helm local-path-provisioner; do echo "# inputs $g $(group_key "$g")"; done
  } > "$tmp"
  mv -f "$tmp" "$MANIFEST"
  log "Adopted the single-key MANIFEST of $K8S_BIN_DIR (one key per group from now on)"
}

verify_all() {  # prints the groups that fail
  local g bad=()
  for g in "${GROUPS_ORDER[@]}"; do group_ok "$g" || bad+=("$g"); done
  [ ${#bad[@]} -eq 0 ] && return 0
  echo "${bad[*]}"; return 1
}

main() {
  case "${1:-}" in
    --print) echo "$K8S_BIN_DIR"; return ;;
    --verify) local bad; bad="$(verify_all)" && { log "Binaries in $K8S_BIN_DIR verified"; return 0; }
              die "binary cache $K8S_BIN_DIR is missing or corrupt for: $bad (run: make k8s-binaries)" ;;
    "") ;;
    *) die "unknown argument $1 (expected --verify or --print)" ;;
  esac
  command -v go >/dev/null || die "Go is needed at /usr/local/go/bin/go to build the Kubernetes binaries"
  mkdir -p "$OUT_ROOT" "$BUILD_ROOT"
  exec 9>"$OUT_ROOT/.lock"
  flock -w 3600 9 || die "another build has held $OUT_ROOT/.lock for an hour; is it stuck?"
  adopt_single_key_manifest
  local g t0 built=0
  for g in "${GROUPS_ORDER[@]}"; do
    group_ok "$g" && continue
    local b; for b in ${GROUP_BINS[$g]}; do
      if [ -e "$K8S_BIN_DIR/$b" ]; then
        log "$K8S_BIN_DIR/$b does not match MANIFEST (corrupt, partial or stale); rebuilding $g"
        break
      fi
    done
    # Forget the group first: if this build dies, nothing half-built passes as good.
    manifest_set_group "$g" drop
    t0=$(date +%s); log "Building $g (${GROUP_BINS[$g]})"
    "build_$g"
    manifest_set_group "$g" add
    log "Built $g in $(( $(date +%s) - t0 ))s"
    echo "$g $(( $(date +%s) - t0 ))s $(date -u +%FT%TZ)" >> "$OUT_ROOT/build-times.txt"
    built=1
  done
  local bad; bad="$(verify_all)" || die "binaries failed verification right after building: $bad"
  if [ "$built" = 1 ]; then log "Binaries ready in $K8S_BIN_DIR"
  else log "Binaries in $K8S_BIN_DIR reused (verified against MANIFEST)"; fi
}

main "$@"
