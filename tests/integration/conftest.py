"""Fixtures for tests against a real kube-apiserver (marker ``cluster``).

Which API server, in order:
1. ``KUBECONFIG`` when set: any cluster (kind, the shared local one, a remote one).
2. The shared local cluster (``~/.cache/tether/cluster/kubeconfig``) when it answers.
3. Otherwise a control-plane-only instance of our own (``TETHER_NO_NODE=1 hack/cluster-up.sh``)
   in a scratch ``CLUSTER_DIR`` on free ports, stopped after the session. Never the shared
   directory: another engineer may be restarting that cluster, and cluster-up tears down an
   unhealthy cluster it finds there. Needs root and the verified binary cache (``make
   k8s-binaries``); else the tests fail saying so. ``TETHER_E2E_NO_START=1`` forbids starting
   one.

Objects go in one throwaway namespace per session; CRDs this session created are deleted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tether_operator.kube import Kube
from tether_operator.reconcile import Reconciler

from ..e2e._cluster import CLUSTER_DIR, TETHER_CACHE, _k8s_version, run_hack
from ..e2e._settings import SettingsError, settings

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((REPO / "crds").glob("*.tether.dev.yaml"))
CRD_NAMES = [p.name.removesuffix(".yaml") for p in CRD_FILES]


@dataclass(frozen=True)
class Kubectl:
    binary: str
    kubeconfig: Path

    def __call__(self, *args: str, stdin: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run kubectl; never raises on a non-zero exit (tests assert on the refusal)."""
        return subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        out = self(*args, stdin=stdin)
        assert out.returncode == 0, f"kubectl {' '.join(args)} failed:\n{out.stderr}"
        return out.stdout


def _kubectl_binary() -> str:
    # The cached one matches the local cluster's version; PATH's serves kind or remote clusters.
    cached = TETHER_CACHE / f"k8s-{_k8s_version()}" / "bin" / "kubectl"
    found = str(cached) if cached.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail(f"no kubectl at {cached} nor on PATH (run: make k8s-binaries, or install "
                    "kubectl)", pytrace=False)
    return found


def _answers(binary: str, kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    probe = subprocess.run([binary, "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
                           capture_output=True, text=True, timeout=20, check=False)
    return probe.returncode == 0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _no_start() -> bool:
    try:
        return settings().no_start
    except SettingsError as exc:
        pytest.fail(str(exc), pytrace=False)


def _start_own_control_plane(state: Path) -> tuple[Path, dict[str, str]]:
    if _no_start():
        pytest.fail("no API server answers and TETHER_E2E_NO_START=1 forbids starting one "
                    "(set KUBECONFIG, or run: make cluster-up)", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("no API server answers and starting one needs root "
                    "(set KUBECONFIG, or run: sudo make cluster-up)", pytrace=False)
    if run_hack("k8s-binaries.sh", "--verify", timeout=120).returncode != 0:
        pytest.fail("no verified binary cache to start an API server (run: make k8s-binaries)",
                    pytrace=False)
    names = ("ETCD", "ETCD_PEER", "APISERVER", "KCM", "SCHEDULER")
    env = {"TETHER_NO_NODE": "1", "CLUSTER_DIR": str(state),
           **{f"TETHER_{n}_PORT": str(p) for n, p in zip(names, _free_ports(len(names)),
                                                          strict=True)}}
    up = run_hack("cluster-up.sh", env=env, timeout=600)
    if up.returncode != 0:
        run_hack("cluster-down.sh", env=env, timeout=180)
        pytest.fail(f"TETHER_NO_NODE=1 hack/cluster-up.sh failed (exit {up.returncode}); "
                    f"logs were in {state}/logs\n{up.stderr[-4000:]}")
    return state / "kubeconfig", env


@pytest.fixture(scope="session")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    binary = _kubectl_binary()
    external = os.environ.get("KUBECONFIG")
    own: dict[str, str] | None = None
    if external:
        kubeconfig = Path(external.split(os.pathsep)[0])
    elif _answers(binary, CLUSTER_DIR / "kubeconfig"):
        kubeconfig = CLUSTER_DIR / "kubeconfig"
    else:
        kubeconfig, own = _start_own_control_plane(tmp_path_factory.mktemp("apiserver") / "state")
    yield Kubectl(binary, kubeconfig)
    if own is not None:
        run_hack("cluster-down.sh", env=own, timeout=180)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> Iterator[list[str]]:
    """The generated CRDs, applied and Established; removed afterwards if this session made
    them (CRDs another run or an operator installed are left in place)."""
    existing = {n for n in CRD_NAMES if kubectl("get", "crd", n).returncode == 0}
    args = [a for p in CRD_FILES for a in ("-f", str(p))]
    kubectl.ok("apply", "--server-side", "--force-conflicts", "--field-manager=tether-tests", *args)
    kubectl.ok("wait", "--for=condition=Established", "--timeout=60s",
               *[f"crd/{n}" for n in CRD_NAMES])
    yield CRD_NAMES
    created = [f"crd/{n}" for n in CRD_NAMES if n not in existing]
    if created:
        kubectl("delete", "--wait=false", *created)


@pytest.fixture(scope="session")
def namespace(kubectl: Kubectl, crds: list[str]) -> Iterator[str]:
    name = f"tether-crds-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", name)
    _wait_served(kubectl, name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def _wait_served(kubectl: Kubectl, namespace: str, timeout: float = 30) -> None:
    # Established comes a moment before the new resources are in discovery.
    deadline = time.monotonic() + timeout
    while True:
        out = kubectl("-n", namespace, "get", "agenttasks,agentbudgets")
        if out.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"agenttasks/agentbudgets not served {timeout}s after Established:\n"
                        f"{out.stderr}")
        time.sleep(0.5)


@pytest.fixture
async def kube(kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kube]:
    """The operator's API client, logged in with the test cluster's kubeconfig."""
    monkeypatch.setenv("KUBECONFIG", str(kubectl.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    k = Kube()
    yield k
    await k.close()

Body = dict[str, Any]


class CaughtUp(Reconciler):
    """The reconciler as it runs when its pod watch has caught up: these tests drive
    ``reconcile`` without kopf, so before each pass the pod index is set to what the watch
    would have delivered by then (the index lagging behind is tested on its own)."""

    async def reconcile(self, ns: str, name: str, live: Body | None = None,
                        verify: bool = False) -> float | None:
        self.pods.replace(ns, name, await self.kube.pods_of(ns, name))
        return await super().reconcile(ns, name, live, verify)
