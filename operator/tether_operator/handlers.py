"""kopf wiring: every event about a task, its pods or a budget wakes the task's reconcile.

Only event handlers and our own loop are used, never kopf's create/update handlers, so kopf
stores nothing on the objects (no annotations, no finalizers of its own): the operator writes
status only, and Argo CD or Flux see no drift.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import kopf

from .decide import TERMINAL
from .kube import GROUP, VERSION
from .manifests import LABEL_TASK
from .reconcile import Reconciler

__all__ = ["register"]

log = logging.getLogger(__name__)
_LIVE_FIELDS = ("step", "spentUSD", "inputTokens", "outputTokens", "retries", "lastCheckpoint",
                "traceID")


async def poll_live(rec: Reconciler, http: httpx.AsyncClient, resync: bool) -> None:
    """Live status from each running sidecar (its ops port); with ``resync``, also wake every
    task that has not finished (the safety net under missed events)."""
    tasks = await rec.kube.list_tasks()
    ips = {(p["metadata"]["namespace"], p["metadata"]["name"]): (p.get("status") or {}).get(
        "podIP") for p in await rec.kube.task_pods()}
    running = []
    for task in tasks:
        st = task.get("status") or {}
        if st.get("phase") in TERMINAL:
            continue
        ns, name = task["metadata"]["namespace"], task["metadata"]["name"]
        if resync:
            rec.wake(ns, name)
        ip = ips.get((ns, st.get("podName") or ""))
        if st.get("phase") == "Running" and ip:
            running.append((task, ip))
    sem = asyncio.Semaphore(32)

    async def one(task: dict[str, Any], ip: str) -> None:
        ns, name = task["metadata"]["namespace"], task["metadata"]["name"]
        async with sem:
            try:
                live = (await http.get(
                    f"http://{ip}:{rec.settings.sidecar_ops_port}/status")).json()
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("No live status from agenttask %s/%s: %s", ns, name, exc)
                return
        current = task.get("status") or {}
        changed = {k: live[k] for k in _LIVE_FIELDS if k in live and live[k] != current.get(k)}
        if changed:
            await rec.kube.patch_task_status(ns, name, changed)
        if live.get("phase") == "BudgetExceeded":
            rec.wake(ns, name, live=live)

    await asyncio.gather(*(one(t, ip) for t, ip in running))


def register(rec: Reconciler) -> None:
    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 270
        settings.persistence.finalizer = "tether.dev/kopf"  # unused: no deletion handlers

        async def loop() -> None:
            last_resync = 0.0
            async with httpx.AsyncClient(timeout=2.0) as http:
                while True:
                    now = asyncio.get_running_loop().time()
                    resync = now - last_resync >= rec.settings.resync_seconds
                    last_resync = now if resync else last_resync
                    try:
                        await poll_live(rec, http, resync)
                    except Exception:  # the loop must outlive one bad round; it is logged
                        log.exception("Live status round failed")
                    await asyncio.sleep(rec.settings.status_poll_seconds)

        asyncio.get_running_loop().create_task(loop())

    @kopf.on.event(GROUP, VERSION, "agenttasks")
    async def on_task(type: str, namespace: str | None, name: str, **_: Any) -> None:
        assert namespace is not None  # AgentTask is namespaced
        if type == "DELETED":
            rec.metrics.task_phase(namespace, name, None)
            return
        rec.wake(namespace, name)

    @kopf.on.event("", "v1", "pods", labels={LABEL_TASK: kopf.PRESENT})
    async def on_pod(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
        assert namespace is not None
        rec.wake(namespace, labels[LABEL_TASK])

    @kopf.on.event(GROUP, VERSION, "agentbudgets")
    async def on_budget(namespace: str | None, **_: Any) -> None:
        assert namespace is not None
        for task in await rec.kube.list_tasks():
            st = task.get("status") or {}
            if task["metadata"]["namespace"] == namespace and st.get("phase") == "Pending":
                rec.wake(namespace, task["metadata"]["name"])
