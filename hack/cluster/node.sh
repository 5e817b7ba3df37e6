# shellcheck shell=bash
# Tier B: one real node. Debian containerd 1.6 + runc, the CNI bridge plugin,
# the kubelet (cgroupfs driver), kube-proxy (iptables) and CoreDNS, all run as plain
# processes (no systemd on this machine) with their state under $CLUSTER_DIR.

node_host_setup() {
  apt_ensure containerd runc containernetworking-plugins iptables conntrack socat iproute2 curl
  # Pod -> ClusterIP -> pod traffic is routed through the host and must be
  # forwarded and seen by iptables while crossing the bridge.
  sysctl -qw net.ipv4.ip_forward=1 || die "cannot enable net.ipv4.ip_forward (needed for Service traffic)"
  if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  else
    log "br_netfilter is not available; relying on kube-proxy masqueradeAll for Services"
  fi
  # Created up front (the bridge plugin adopts it) so the node IP exists before the
  # kubelet and the apiserver forwarder bind to it.
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE"
  fi
  ip addr replace "$NODE_IP/16" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  pod_route_check
  mkdir -p "$CNI_CONF_DIR"
  cat > "$CNI_CONF_DIR/10-tether.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "tether",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$RUN/cni-ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

# Replies to pods (DNS answers, the apiserver forwarder's) must leave by our bridge. Another
# tool's bridge on the same subnet takes the route: podman's and buildah's default network is
# also 10.88.0.0/16 (cni-podman0), and pods then send but never hear back.
pod_route_check() {
  local dev
  dev="$(ip -o route get "${NODE_IP%.*}.2" 2>/dev/null | sed -nE 's/.* dev ([^ ]+).*/\1/p')"
  [ "$dev" = "$BRIDGE" ] || die "the route to the pod network $POD_CIDR goes through ${dev:-nothing}, not $BRIDGE: another bridge holds the same subnet (podman/buildah's default network is 10.88.0.0/16). Remove it (ip link del $dev) or give that tool another subnet, then re-run make cluster-up"
}

start_containerd() {
  mkdir -p "$RUN/containerd" "$CONTAINERD_ROOT"
  cat > "$CLUSTER_DIR/containerd.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT/root"
state = "$RUN/containerd/state"
# Plugins that cannot work here; disabling them keeps the log readable.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  # Our own pause image, imported from hack/images.sh; never pulled.
  sandbox_image = "docker.io/tether/pause:$TETHER_VERSION"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # This VM withholds CAP_SYS_RESOURCE even from root, so runc cannot lower
  # oom_score_adj (the kubelet asks -998 for sandboxes): clamp to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CONTAINERD_ROOT/opt"
TOML
  start_proc containerd /usr/bin/containerd --config "$CLUSTER_DIR/containerd.toml"
  wait_for containerd 60 ctr_k8s version
}

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# Import the images tar unless this exact build is already in containerd's store.
import_images() {
  local tar key stamp="$CONTAINERD_ROOT/imported.key"
  tar="$("$HACK_DIR/images.sh")" || die "building the node images failed (see above)"
  key="$(cat "$(dirname "$tar")/key")"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] \
     && ctr_k8s images ls -q | grep -qx "docker.io/tether/pause:$TETHER_VERSION"; then
    log "Images $key already imported"
    return 0
  fi
  log "Importing images ($tar) into containerd"
  ctr_k8s images import "$tar" >> "$LOGS/images-import.log" 2>&1 \
    || die "ctr images import failed; see $LOGS/images-import.log"
  echo "$key" > "$stamp"
}

kubelet_config() {
  cat <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Serve only on the pod bridge's gateway (the node IP), not on the VM's interfaces.
address: $NODE_IP
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
# Pods get the kube-dns Service as nameserver and these search domains (start_coredns).
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: $CLUSTER_DOMAIN
failSwapOn: false
# A shared dev VM's disk is often >85% full; the defaults would evict test pods.
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
maxPods: 110
YAML
}

start_kubelet() {
  mkdir -p "$KUBELET_DIR"
  kubelet_config | update_file "$CLUSTER_DIR/kubelet.yaml" || true
  start_proc kubelet "$K8S_BIN_DIR/kubelet" \
    --config "$CLUSTER_DIR/kubelet.yaml" \
    --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" \
    --root-dir "$KUBELET_DIR" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --v 1
  wait_for kubelet 90 curl -fsS "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
}

start_kube_proxy() {
  cat > "$CLUSTER_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
# Pods on one bridge: without SNAT a reply would bypass the DNAT'ing host.
iptables: {masqueradeAll: true}
# 0 = leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start_proc kube-proxy "$K8S_BIN_DIR/kube-proxy" --config "$CLUSTER_DIR/kube-proxy.yaml" --v 1
  wait_for kube-proxy 60 curl -fsS "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
}

# The apiserver listens on loopback only; pods reach it through the kubernetes
# Service, whose endpoint is NODE_IP:APISERVER_PORT, forwarded here to loopback.
start_apiserver_forward() {
  start_proc apiserver-forward /usr/bin/socat \
    "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_IP,reuseaddr,fork" "TCP:127.0.0.1:$APISERVER_PORT"
  wait_for apiserver-forward 20 bash -c "exec 3<>/dev/tcp/$NODE_IP/$APISERVER_PORT"
}

node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# The manifests and the Corefile with this cluster's addresses and paths filled in.
_fill_dns() {  # file
  sed -e "s#@NODE_IP@#$NODE_IP#g" -e "s#@DNS_PORT@#$DNS_PORT#g" \
    -e "s#@DNS_READY_PORT@#$DNS_READY_PORT#g" -e "s#@DNS_SERVICE_IP@#$DNS_SERVICE_IP#g" \
    -e "s#@KUBECONFIG@#$CLUSTER_DIR/coredns.kubeconfig#g" "$HACK_DIR/cluster/manifests/$1"
}

# Cluster DNS: CoreDNS as a host process on the node IP (like kube-proxy, no image
# needed), behind the kube-dns Service; restarted only when its Corefile changed.
start_coredns() {
  [ -f "$PKI/coredns.crt" ] || _issue coredns clientAuth "/CN=system:coredns"
  [ -f "$CLUSTER_DIR/coredns.kubeconfig" ] \
    || _kubeconfig "$CLUSTER_DIR/coredns.kubeconfig" system:coredns coredns
  _fill_dns coredns.yaml | kubectl_admin apply -f - > "$LOGS/dns-manifests.log" 2>&1 \
    || { cat "$LOGS/dns-manifests.log" >&2; die "applying hack/cluster/manifests/coredns.yaml failed"; }
  if _fill_dns Corefile | update_file "$CLUSTER_DIR/Corefile" && live_pid coredns >/dev/null; then
    log "Corefile changed; restarting coredns"
    stop_proc coredns
  fi
  start_proc coredns "$K8S_BIN_DIR/coredns" -conf "$CLUSTER_DIR/Corefile"
  # /ready answers 200 once the kubernetes plugin has listed Services and EndpointSlices.
  wait_for coredns 60 curl -fsS "http://127.0.0.1:$DNS_READY_PORT/ready"
}

node_up() {
  node_host_setup
  start_apiserver_forward
  start_containerd
  import_images
  start_kubelet
  start_kube_proxy
  start_coredns
  wait_for kubelet 120 node_ready
}

# On a running cluster: bring the node up to the current scripts, restarting only the
# components whose configuration changed. Restarting the kubelet leaves pods running;
# pods started before a DNS change keep their old resolv.conf until recreated.
node_converge() {
  pod_route_check
  if kubelet_config | update_file "$CLUSTER_DIR/kubelet.yaml"; then
    log "The kubelet's configuration changed; restarting the kubelet (pods keep running)"
    stop_proc kubelet
    start_kubelet
    wait_for kubelet 120 node_ready
  fi
  start_coredns
}
