"""Where the cluster monitoring tests get their parts (re-exported by tests/e2e/_monitoring.py):
the Prometheus with Kubernetes discovery hack/prometheus-kubernetes.sh builds, and the
Prometheus Operator's CRDs hack/prometheus-operator-crds.sh copies, installed in the cluster.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .._obs import wait_for
from ._settings import REPO_ROOT, TETHER_CACHE

__all__ = ["install_crds", "operator_crds", "prometheus_kubernetes"]

def _tool(env: str, script: str, cached: Path) -> Path:
    """$env, else what ``script`` caches; the make targets run the script and pass $env. A
    missing one fails naming the script (never a PATH lookup: Debian's prometheus on PATH
    lacks the Kubernetes discovery)."""
    path = Path(os.environ.get(env) or cached)
    if not path.exists():
        pytest.fail(f"{path} is missing: run {script} (make test runs it and passes ${env})",
                    pytrace=False)
    return path


def prometheus_kubernetes() -> str:
    """The Prometheus hack/prometheus-kubernetes.sh builds (with kubernetes_sd_configs)."""
    version = _pinned("hack/prometheus-kubernetes.sh", "PROMETHEUS_VERSION")
    return str(_tool("PROMETHEUS_KUBERNETES", "hack/prometheus-kubernetes.sh",
                     TETHER_CACHE / "tools" / f"prometheus-kubernetes-{version}" / "prometheus"))


def operator_crds() -> Path:
    """The Prometheus Operator's CRDs hack/prometheus-operator-crds.sh copies."""
    version = _pinned("hack/prometheus-operator-crds.sh", "PROMETHEUS_OPERATOR_VERSION")
    return _tool("PROMETHEUS_OPERATOR_CRDS", "hack/prometheus-operator-crds.sh",
                 TETHER_CACHE / "tools" / f"prometheus-operator-crds-{version}")


def _pinned(script: str, name: str) -> str:
    found = re.search(rf"^{name}=(\S+)", (REPO_ROOT / script).read_text(), re.M)
    if not found:
        pytest.fail(f"{script} has no {name}= line", pytrace=False)
    return found.group(1)


def install_crds(api: client.ApiClient) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule CRDs, server-side applied (so tests that
    install them at once do not conflict), then Established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(operator_crds().glob("monitoring.coreos.com_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        names.append(crd["metadata"]["name"])
        ext.patch_custom_resource_definition(
            crd["metadata"]["name"], crd, field_manager="tether-e2e", force=True,
            _content_type="application/apply-patch+yaml")

    def established() -> bool | None:
        conditions = [getattr(ext.read_custom_resource_definition(n).status, "conditions", None)
                      or [] for n in names]
        return all(any(c.type == "Established" and c.status == "True" for c in conds)
                   for conds in conditions) or None
    wait_for(established, 60, f"the CRDs {names} Established")
