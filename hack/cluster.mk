# Local Kubernetes for tests and the demo (issue 4). Included by the top-level
# Makefile. Everything is built offline from Go modules and Debian packages and
# cached under ~/.cache/tether; see docs/cluster.md.
.PHONY: k8s-binaries images cluster-up cluster-down cluster-status cluster-env e2e kube-demo

## Build (or verify the cached) Kubernetes, etcd, kwok, helm, local-path-provisioner.
k8s-binaries:
	hack/k8s-binaries.sh

## Build the node images (pause, base/sidecar/operator/agent/..., provisioner).
images:
	hack/images.sh

## Start the cluster (idempotent); prints the kubeconfig path.
cluster-up:
	hack/cluster-up.sh

## Stop the cluster and delete its state (caches are kept).
cluster-down:
	hack/cluster-down.sh

cluster-status:
	hack/cluster-status.sh

## README's "Run it on Kubernetes" on the local cluster: the chart, the test doubles and the
## sample AgentTask, until it is Succeeded (started/updated first; needs root).
kube-demo:
	hack/kube-demo.sh

## The e2e suite against the local cluster (started if needed) or $KUBECONFIG.
e2e:
	$(or $(wildcard .venv/bin/python),python3) -m pytest tests/e2e -m "cluster or node" -v

## Print the shell exports to use the cluster's kubectl/helm/kwok and kubeconfig.
cluster-env:
	@echo "export KUBECONFIG=$${CLUSTER_DIR:-$$HOME/.cache/tether/cluster}/kubeconfig"
	@echo "export PATH=$$(hack/k8s-binaries.sh --print):\$$PATH"
