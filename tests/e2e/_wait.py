"""Polling waits with deadlines for the e2e suite.

Each wait fails with what it last saw, and a pod wait stops at once on a state
that cannot recover (image never pulled, crash loop), instead of timing out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kubernetes import client

T = TypeVar("T")

# Waiting reasons after which a pod will not become Running without a change.
_FATAL_REASONS = {"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff",
                  "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                  "InvalidImageName"}


class WaitTimeout(AssertionError):
    pass


def until(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call fn until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise WaitTimeout(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def pod_running(core: client.CoreV1Api, ns: str, name: str, timeout: float = 120) -> client.V1Pod:
    """Wait until the pod is Running with every container ready."""
    def check() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, ns)
        containers = pod.status.container_statuses or []
        for st in (pod.status.init_container_statuses or []) + containers:
            waiting = st.state.waiting if st.state else None
            if waiting and waiting.reason in _FATAL_REASONS:
                raise AssertionError(f"pod {ns}/{name} container {st.name} is stuck: "
                                     f"{waiting.reason}: {waiting.message}")
        if pod.status.phase == "Failed":
            raise AssertionError(
                f"pod {ns}/{name} failed: {pod.status.reason} {pod.status.message}")
        ready = bool(containers) and all(st.ready for st in containers)
        return pod if pod.status.phase == "Running" and ready else None
    return until(check, timeout, f"pod {ns}/{name} to be Running and ready")


def absent(read: Callable[[], object]) -> bool:
    """True when ``read()`` (a read_namespaced_* call) answers 404; other errors raise."""
    try:
        read()
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def pod_gone(core: client.CoreV1Api, ns: str, name: str, timeout: float = 60) -> None:
    until(lambda: absent(lambda: core.read_namespaced_pod(name, ns)), timeout,
          f"pod {ns}/{name} to be deleted")
