"""A broken environment gives a clear message and a clean retry, never a hang.

These run a second, control-plane-only instance (TETHER_NO_NODE=1) in a scratch
directory on free ports, so the shared cluster other tests use is not touched.
They need root and this machine's verified binary cache (hack/k8s-binaries.sh), and fail
naming what is missing; on a machine that only tests another cluster (kind in CI), deselect
them: ``-m "not local_cluster"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._cluster import TETHER_CACHE, _k8s_version, run_hack

pytestmark = [pytest.mark.cluster, pytest.mark.local_cluster]

K8S_DIR = TETHER_CACHE / f"k8s-{_k8s_version()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need_root_and_binaries() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests start a control plane of their own, which needs root "
                    "(run them as root, or deselect them: -m 'not local_cluster')", pytrace=False)
    verify = run_hack("k8s-binaries.sh", "--verify", timeout=120)
    if verify.returncode != 0:
        pytest.fail(f"no verified binary cache on this machine (run: make k8s-binaries):\n"
                    f"{verify.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    _need_root_and_binaries()
    env = {
        "TETHER_NO_NODE": "1",
        "CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster") / "state"),
        **{f"TETHER_{name}_PORT": str(_free_port())
           for name in ("ETCD", "ETCD_PEER", "APISERVER", "KCM", "SCHEDULER")},
    }
    yield env
    run_hack("cluster-down.sh", env=env, timeout=180)


def _up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A hang would hit this timeout and fail the test: the point is that it must not.
    return run_hack("cluster-up.sh", env=env, timeout=180)


def test_port_taken_fails_fast_then_retry_succeeds(instance: dict[str, str]) -> None:
    port = int(instance["TETHER_APISERVER_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        blocked = _up(instance)
    assert blocked.returncode != 0
    assert f"port {port} (apiserver) is already in use" in blocked.stderr
    assert "TETHER_APISERVER_PORT" in blocked.stderr, "the message should say how to move the port"
    retry = _up(instance)
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.strip().endswith("/kubeconfig")


def _pids(env: dict[str, str]) -> dict[str, int]:
    pids = {}
    for f in (Path(env["CLUSTER_DIR"]) / "pids").glob("*.pid"):
        pids[f.stem] = int(f.read_text().split()[0])
    return pids


def test_stale_state_from_a_crash_is_cleaned_and_restarted(instance: dict[str, str]) -> None:
    assert _up(instance).returncode == 0
    for pid in _pids(instance).values():  # a crash: every component dies at once
        os.kill(pid, signal.SIGKILL)
    retry = _up(instance)
    assert retry.returncode == 0, retry.stderr
    assert "stale state" in retry.stderr or "unhealthy" in retry.stderr


def test_half_dead_cluster_is_restarted(instance: dict[str, str]) -> None:
    assert _up(instance).returncode == 0
    os.kill(_pids(instance)["kube-apiserver"], signal.SIGKILL)
    retry = _up(instance)
    assert retry.returncode == 0, retry.stderr
    assert "unhealthy (running:" in retry.stderr


def test_cluster_down_is_idempotent(instance: dict[str, str]) -> None:
    first = run_hack("cluster-down.sh", env=instance, timeout=180)
    assert first.returncode == 0, first.stderr
    assert not Path(instance["CLUSTER_DIR"]).exists()
    second = run_hack("cluster-down.sh", env=instance, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stderr


def test_corrupt_binary_cache_is_detected_and_rebuilt(tmp_path: Path) -> None:
    _need_root_and_binaries()
    # A scratch cache of hard links: cheap, and replacing (not editing) a file
    # leaves the real cache intact. The Go caches stay shared, so the rebuild is warm.
    scratch = tmp_path / "cache"
    shutil.copytree(K8S_DIR, scratch / K8S_DIR.name, copy_function=os.link,
                    ignore=shutil.ignore_patterns(".lock"))
    kwok = scratch / K8S_DIR.name / "bin" / "kwok"
    kwok.unlink()
    kwok.write_bytes(b"\x7fELF truncated by a crash")
    env = {"TETHER_CACHE": str(scratch), "TETHER_GO_CACHE": str(TETHER_CACHE / "go"),
           "K8S_BIN_DIR": str(kwok.parent)}

    verify = run_hack("k8s-binaries.sh", "--verify", env=env, timeout=120)
    assert verify.returncode != 0
    assert "missing or corrupt for: kwok" in verify.stderr

    rebuild = run_hack("k8s-binaries.sh", env=env, timeout=900)
    assert rebuild.returncode == 0, rebuild.stderr
    assert "Building kwok" in rebuild.stderr
    assert "Building kubernetes" not in rebuild.stderr, "only the corrupt group is rebuilt"
    assert run_hack("k8s-binaries.sh", "--verify", env=env, timeout=120).returncode == 0
    version = subprocess.run([str(kwok), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0, version.stderr
