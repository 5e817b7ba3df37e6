"""Every alert of the chart's `tether-operator` and `tether-tasks` groups fires on the real
cluster and resolves after it, each reaching an Alertmanager webhook receiver (issue #11).

The chart is helm-installed with its ServiceMonitor, PodMonitor and PrometheusRule (the
Prometheus Operator's CRDs applied from its module), one operator replica in the cluster, one
worker, and seconds-scale rule durations (values). A Prometheus on this machine scrapes what the
Prometheus Operator would from those objects as read back from the API server
(tests/e2e/_monitoring.py): the operator through the ServiceMonitor's endpoints discovery, the
task sidecars through the PodMonitor's pod discovery. What each scenario does:

- TetherTaskSoftLimitReached / TetherTaskHardLimitReached: an AgentTask spends past its soft
  limit, then the sidecar refuses the call that would pass its hard limit (BudgetExceeded). Its
  agent takes 5 s to stop when the pod is deleted, as one writing a checkpoint does, so the
  sidecar is scraped after the refusal. Both resolve when the pod is gone.
- TetherBudgetNearlySpent: that task draws on an AgentBudget; raising the budget's limit
  resolves it.
- TetherTasksFailing: an AgentTask whose agent exits 3 with backoffLimit 0 ends Failed; the alert
  resolves once the failure is older than the window.
- TetherOperatorBacklog: an admission webhook makes the API server take 4 s to admit each pod of
  a burst of six tasks, so the one worker is busy and the queue holds them; deleting the burst
  resolves it.
- TetherOperatorDown: the Deployment scaled to 0; back to 1, it resolves.
- TetherOperatorNoLeader: the replica comes back while a foreign holder has the Lease for an
  hour (a replica of another install, or one stuck, that renewed it last): it stands by.
  Deleting the Lease lets it lead.
- TetherOperatorTwoLeaders: simulates a second copy of the operator Deployment behind the same
  Service started without leader election (TETHER_OPERATOR_LEADER_ELECTION=false, as a
  hand-made copy or an older manifest runs it): it leads without the Lease while the chart's
  replica leads with it. Deleting the copy resolves it. (A replica cut off from the API server
  cannot do this: it stops leading at the Lease's deadline, before a standby may take over.)

Needs the real node (marker ``node``), the images of ``make cluster-up`` (operator, sidecar,
agent), Prometheus with Kubernetes discovery and the Operator's CRDs (hack/prometheus-
kubernetes.sh, hack/prometheus-operator-crds.sh: the make targets pass them), Alertmanager.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import yaml
from kubernetes import client

from .._obs import alertmanager, get_json, wait_for
from . import _tools
from ._alert_scenarios import ALERT_S, Stack, leadership, tasks_and_budget
from ._cluster import REPO_ROOT, Cluster
from ._monitoring import (
    Receiver,
    chart_monitoring,
    cluster_prometheus,
    install_crds,
    monitoring_objects,
    write_rules,
)
from ._settings import E2ESettings
from ._tasks import Doubles, doubles
from .conftest import _unpin as unpin
from .test_chart import wait_schedulable

# Prometheus runs on this machine and scrapes pod IPs, as the local cluster allows (kind's do not).
pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.pod_network]
__all__ = ["doubles"]  # a fixture from _tasks.py, used here by name

CHART = REPO_ROOT / "charts" / "tether"
DURATIONS = {"operatorDown": "4s", "noLeader": "4s", "twoLeaders": "4s", "backlog": "2s",
             "budgetNearlySpent": "2s", "failedWindow": "20s", "subqueryStep": "1s",
             "softLimit": "0s", "hardLimit": "0s"}


@pytest.fixture
def namespace(core: client.CoreV1Api, real_node: str) -> Iterator[str]:
    """A fresh namespace, short-named: the release's cluster-scoped roles carry its name."""
    wait_schedulable(core, real_node)
    name = f"alerts-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"tether.dev/e2e": "true"})))
    wait_for(lambda: any(sa.metadata.name == "default" for sa in
                         core.list_namespaced_service_account(name).items) or None,
             30, f"the default ServiceAccount in {name}")
    yield name
    core.delete_namespace(name)


def chart_values(settings: E2ESettings, namespace: str) -> dict[str, Any]:
    prefix, policy = settings.image_prefix.rstrip("/"), settings.image_pull_policy
    return {
        "image": {"repository": f"{prefix}/operator", "tag": settings.image_tag,
                  "pullPolicy": policy},
        "replicas": 1, "watchNamespaces": [namespace],
        "sidecarImage": {"repository": f"{prefix}/sidecar", "tag": settings.image_tag},
        "operator": {"settings": {"image_pull_policy": policy, "status_poll_seconds": 1,
                                  "backoff_base_seconds": 1, "workers": 1}},
        "podLabels": {"tether.dev/e2e": "operator"},  # conftest's log collection selects it
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "1s", "scrapeTimeout": "1s"},
                    "podMonitor": {"enabled": True, "interval": "1s"},
                    "prometheusRule": {"enabled": True, "queueDepth": 2,
                                       "budgetSpentRatio": 0.1, "durations": DURATIONS}},
    }


def helm(cluster: Cluster, ns: str, *args: str) -> None:
    out = subprocess.run([_tools.helm(), "--kubeconfig", str(cluster.kubeconfig), "-n", ns,
                          *args], capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"


@pytest.fixture
def stack(api: client.ApiClient, core: client.CoreV1Api, cluster: Cluster, namespace: str,
          tmp_path: Path, e2e_settings: E2ESettings, doubles: Doubles) -> Iterator[Stack]:
    install_crds(api)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(e2e_settings, namespace)))
    helm(cluster, namespace, "install", namespace, str(CHART), "-f", str(values),
         "--wait", "--timeout", "3m")
    operator = f"{namespace}-tether-operator"
    try:
        scrape, groups = chart_monitoring(monitoring_objects(api, namespace), cluster.kubeconfig)
        rules = write_rules(tmp_path / "rules.yaml", groups)
        with (Receiver() as receiver, alertmanager(tmp_path, receiver.url) as am,
              cluster_prometheus(tmp_path, scrape, [rules], am) as prom):
            up = f'up{{job="{operator}",namespace="{namespace}"}} == 1'
            wait_for(lambda: get_json(f"{prom}/api/v1/query?query={quote(up)}")["data"]
                     ["result"] or None, ALERT_S, "Prometheus scraping the operator (this "
                     "machine must reach pod IPs: the local cluster routes them via cni0, kind "
                     "does not)")
            yield Stack(namespace, operator, prom, receiver,
                        urlsplit(doubles.model).hostname or "")
    finally:
        for pod in core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component=operator").items:
            print(f"--- {pod.metadata.name}\n"
                  f"{str(core.read_namespaced_pod_log(pod.metadata.name, namespace))[-6000:]}")
        helm(cluster, namespace, "uninstall", namespace, "--wait", "--timeout", "2m")
        unpin(api, core, namespace)  # the operator is gone: its finalizers would hold the ns


def test_operator_and_task_alerts_fire_and_resolve(stack: Stack, api: client.ApiClient,
                                                    core: client.CoreV1Api,
                                                    doubles: Doubles) -> None:
    tasks_and_budget(stack, api, core, doubles)
    leadership(stack, api, core)
    print(yaml.safe_dump({k: {s: round(v, 1) for s, v in t.items()}
                          for k, t in stack.seen.items()}))
    assert set(stack.seen) == {
        "TetherTaskSoftLimitReached", "TetherTaskHardLimitReached", "TetherBudgetNearlySpent",
        "TetherTasksFailing", "TetherOperatorBacklog", "TetherOperatorDown",
        "TetherOperatorNoLeader", "TetherOperatorTwoLeaders"}
    assert all("resolvedNotified" in t for t in stack.seen.values()), stack.seen
