# shellcheck shell=bash
# Certificates and kubeconfigs for the cluster, with openssl. ECDSA P-256 keys:
# generated in milliseconds, so a fresh cluster costs no time here.

_openssl() { openssl "$@" 2>>"$LOGS/certs.log" || die "openssl $1 failed; see $LOGS/certs.log"; }

_key() { _openssl ecparam -name prime256v1 -genkey -noout -out "$1"; chmod 600 "$1"; }

# Issue a cert signed by the cluster CA. $3 = subject, $4 = extensions.
_issue() {  # name usage subject [san]
  local n="$1" usage="$2" subj="$3" san="${4:-}" ext="$PKI/$1.ext"
  _key "$PKI/$n.key"
  _openssl req -new -key "$PKI/$n.key" -subj "$subj" -out "$PKI/$n.csr"
  { echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"; } > "$ext"
  _openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$PKI/$n.crt"
  rm -f "$PKI/$n.csr" "$ext"
}

_kubeconfig() {  # file user cert-name
  local f="$1" kc=("$K8S_BIN_DIR/kubectl" --kubeconfig "$1")
  rm -f "$f"
  "${kc[@]}" config set-cluster tether --server="https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null
  "${kc[@]}" config set-credentials "$2" --client-certificate="$PKI/$3.crt" \
    --client-key="$PKI/$3.key" --embed-certs=true >/dev/null
  "${kc[@]}" config set-context tether --cluster=tether --user="$2" >/dev/null
  "${kc[@]}" config use-context tether >/dev/null
  chmod 600 "$f"
}

make_certs() {
  mkdir -p "$PKI" "$LOGS"
  if [ -f "$PKI/.complete" ]; then return 0; fi
  log "Generating certificates in $PKI"
  _key "$PKI/ca.key"
  _openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=tether-cluster-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt"
  _issue apiserver serverAuth "/CN=kube-apiserver" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$NODE_IP"
  _issue apiserver-kubelet-client clientAuth "/O=system:masters/CN=kube-apiserver-kubelet-client"
  _issue admin clientAuth "/O=system:masters/CN=tether-admin"
  _issue controller-manager clientAuth "/CN=system:kube-controller-manager"
  _issue scheduler clientAuth "/CN=system:kube-scheduler"
  _issue kubelet clientAuth "/O=system:nodes/CN=system:node:$NODE_NAME"
  _issue kube-proxy clientAuth "/CN=system:kube-proxy"
  _issue kubelet-serving serverAuth "/CN=$NODE_NAME" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
  # ServiceAccount token signing pair.
  _key "$PKI/sa.key"
  _openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  _kubeconfig "$KUBECONFIG_ADMIN" tether-admin admin
  _kubeconfig "$CLUSTER_DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  _kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" system:kube-scheduler scheduler
  _kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
  _kubeconfig "$CLUSTER_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  touch "$PKI/.complete"
}
