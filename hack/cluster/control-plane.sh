# shellcheck shell=bash
# Tier A: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, all bound
# to 127.0.0.1. Flags follow what kubeadm sets, minus HA and cloud concerns.

start_etcd() {
  mkdir -p "$CLUSTER_DIR/etcd"
  chmod 700 "$CLUSTER_DIR/etcd"
  # Plain HTTP is acceptable only because etcd listens on loopback and holds a
  # throwaway test cluster; a real cluster would use etcd's peer/client TLS.
  start_proc etcd "$K8S_BIN_DIR/etcd" \
    --name tether --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "tether=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" \
    --quota-backend-bytes $((2*1024*1024*1024)) \
    --snapshot-count 10000 --log-level warn
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  start_proc kube-apiserver "$K8S_BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --advertise-address "$NODE_IP" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --profiling="${TETHER_APISERVER_PROFILING:-false}" \
    --event-ttl 1h \
    --v 1
  wait_for kube-apiserver 120 kubectl_admin get --raw /readyz
}

start_controller_manager() {
  local kc="$CLUSTER_DIR/controller-manager.kubeconfig"
  # Default controller set ("*"): garbage collector, PV binder, service-account
  # tokens, disruption (PDBs), namespace deletion, node lifecycle, ...
  start_proc kube-controller-manager "$K8S_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --leader-elect=false \
    --controllers '*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allocate-node-cidrs=false \
    --v 1
  wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
}

start_scheduler() {
  local kc="$CLUSTER_DIR/scheduler.kubeconfig"
  start_proc kube-scheduler "$K8S_BIN_DIR/kube-scheduler" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --leader-elect=false --v 1
  wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHEDULER_PORT/healthz"
}

control_plane_up() {
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
}

# kwok fakes nodes and their pods for scale tests. It only manages nodes annotated
# kwok.x-k8s.io/node=fake, so the real node is left to its kubelet.
start_kwok() {
  start_proc kwok "$K8S_BIN_DIR/kwok" \
    --kubeconfig "$KUBECONFIG_ADMIN" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --manage-nodes-with-label-selector= \
    --disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom \
    --disregard-status-with-label-selector= \
    --server-address 127.0.0.1:0 \
    --cidr 10.89.0.0/16 --node-ip 10.89.0.1
}
