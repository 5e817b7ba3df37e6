"""kopf wiring: every event about a task, its pods or a budget wakes the task's reconcile.

Only event handlers and our own loop are used, never kopf's create/update handlers, so kopf
stores nothing on the objects (no annotations, no finalizers of its own): the operator writes
status only, and Argo CD or Flux see no drift.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import kopf

from . import credentials
from .decide import TERMINAL
from .kube import GROUP, VERSION, ApiError, Conflict
from .ledger import MONOTONE, STATUS_FIELDS, at_least, money
from .manifests import LABEL_TASK
from .reconcile import Reconciler

__all__ = ["register"]

log = logging.getLogger(__name__)
# As the sidecar's /status names them; spend and counters only ever go up (ledger.py).
_LIVE_FIELDS = (*MONOTONE, "lastCheckpoint", "traceID", "reservedUSD", "hardLimitUSD")
_INDEXED = ("phase", "podName", "observedGeneration", *_LIVE_FIELDS)


def live_patch(seen: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """What of a sidecar's /status to write onto the status ``seen``: spend and counters only
    when higher (a new attempt's sidecar starts from the prior figures, a stale answer must
    not lower them), ``generation`` as ``observedGeneration`` (the spec it enforces)."""
    patch = {k: v for k, v in at_least(seen, live).items() if money(v) > money(seen.get(k))}
    patch.update({k: live[k] for k in ("lastCheckpoint", "traceID", "reservedUSD",
                                        "hardLimitUSD")
                  if live.get(k) is not None and live[k] != seen.get(k)
                  and k in STATUS_FIELDS})
    if live.get("generation") is not None and live["generation"] != seen.get(
            "observedGeneration"):
        patch["observedGeneration"] = int(live["generation"])
    return patch


async def poll_live(rec: Reconciler, http: httpx.AsyncClient, resync: bool,
                    progress: Callable[[], None] = lambda: None) -> None:
    """Live status from each running sidecar (its ops port); with ``resync``, also wake every
    task that has not finished (the safety net under missed events). Works from the indexes
    the watch events keep, so a round costs no API list, however many tasks there are.
    ``progress`` is called as each sidecar's poll ends (liveness): a round over thousands of
    unreachable sidecars (a partitioned node: 2 s each, 32 at a time) is slow, not stuck."""
    running = []
    for (ns, name), seen in list(rec.tasks.items()):
        if seen.get("phase") in TERMINAL:
            continue
        if resync:
            rec.wake_low(ns, name)
        ip = rec.pod_ips.get((ns, seen.get("podName") or ""))
        if seen.get("phase") == "Running" and ip:
            running.append((ns, name, seen, ip))
    running = _this_round(rec, running)
    sem = asyncio.Semaphore(32)

    async def one(ns: str, name: str, seen: dict[str, Any], ip: str) -> None:
        async with sem:
            try:
                live = (await http.get(
                    f"http://{ip}:{rec.settings.sidecar_ops_port}/status")).json()
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("No live status from agenttask %s/%s: %s", ns, name, exc)
                return
            finally:
                progress()
        if not isinstance(live, dict):
            log.debug("No live status from agenttask %s/%s: not a JSON object", ns, name)
            return
        changed = live_patch(seen, live)
        if changed:
            try:  # only onto the status the figures were compared with
                await rec.kube.patch_task_status(ns, name, changed, seen.get("resourceVersion"))
            except Conflict:
                log.debug("Agenttask %s/%s changed since its last event; live status next "
                          "round", ns, name)
        if live.get("phase") == "BudgetExceeded":
            rec.wake(ns, name, live=live)

    await asyncio.gather(*(one(*item) for item in running))


def _this_round(rec: Reconciler, running: list[Any]) -> list[Any]:
    """The sidecars this round polls: all of them, or the round's share, in turn.

    Polling 10,000 sidecars every 5 s is 2,000 requests a second, more than the operator's one
    process has (measured on kwok: the live loop took most of its event loop and pods came
    slower); live figures are a view, and final figures come from each pod's summary, so a
    busy operator polls each sidecar less often instead."""
    share = max(1, int(rec.settings.live_polls_per_second * rec.settings.status_poll_seconds))
    if len(running) <= share:
        return running
    start = rec.poll_cursor % len(running)
    rec.poll_cursor = start + share
    return (running[start:] + running[:start])[:share]


def json_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """kopf's read-only body view as the plain dict the pure modules take."""
    plain: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return plain


def register(rec: Reconciler, tick: Callable[[], None] = lambda: None) -> None:
    """Wire ``rec`` to kopf; ``tick`` is called as the live-status loop makes progress (each
    sidecar polled, each round ended): the liveness probe's evidence."""
    @kopf.on.login()
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # The same loader and context as rec.kube's.
        return await asyncio.to_thread(credentials.load, rec.settings.context)

    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 270
        # kopf keeps a worker per object, holding its last body, this long after its last
        # event; its 5 s default keeps ~1,000 bodies alive through a burst (+25 MB RSS).
        settings.queueing.idle_timeout = 0.5
        settings.persistence.finalizer = "tether.dev/kopf"  # unused: no deletion handlers

        async def loop() -> None:
            last_resync = 0.0
            async with httpx.AsyncClient(timeout=2.0) as http:
                while True:
                    now = asyncio.get_running_loop().time()
                    resync = now - last_resync >= rec.settings.resync_seconds
                    last_resync = now if resync else last_resync
                    try:
                        await poll_live(rec, http, resync, tick)
                    except Exception:  # the loop must outlive one bad round; it is logged
                        log.exception("Live status round failed")
                    tick()
                    await asyncio.sleep(rec.settings.status_poll_seconds)

        asyncio.get_running_loop().create_task(loop())

    @kopf.on.event(GROUP, VERSION, "agenttasks")
    async def on_task(type: str, namespace: str | None, name: str, status: Mapping[str, Any],
                      meta: Mapping[str, Any], **_: Any) -> None:
        assert namespace is not None  # AgentTask is namespaced
        if type == "DELETED":
            rec.metrics.task_phase(namespace, name, None)
            rec.tasks.pop((namespace, name), None)
            return
        rec.tasks[(namespace, name)] = {k: status.get(k) for k in _INDEXED}
        rec.tasks[(namespace, name)]["resourceVersion"] = meta.get("resourceVersion")
        if not rec.echo(namespace, name, meta.get("resourceVersion")):
            rec.wake(namespace, name)

    @kopf.on.event("", "v1", "pods", labels={LABEL_TASK: kopf.PRESENT})
    async def on_pod(type: str, labels: Mapping[str, str], namespace: str | None, name: str,
                     status: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        assert namespace is not None
        rec.pods.seen(json_body(body), deleted=type == "DELETED")
        if type == "DELETED":
            rec.pod_ips.pop((namespace, name), None)
        else:
            rec.pod_ips[(namespace, name)] = status.get("podIP")
        rec.wake(namespace, labels[LABEL_TASK])

    @kopf.on.event(GROUP, VERSION, "evaluationpolicies")
    async def on_policy(type: str, body: Mapping[str, Any], **_: Any) -> None:
        rec.policies.seen(json_body(body), deleted=type == "DELETED")  # read at the next pod

    @kopf.on.event(GROUP, VERSION, "agentbudgets")
    async def on_budget(type: str, namespace: str | None, body: Mapping[str, Any],
                        **_: Any) -> None:
        assert namespace is not None
        rec.book.seen(json_body(body), deleted=type == "DELETED")
        if type != "DELETED":  # a new limit or softLimitPercent shows in status at once
            try:
                await rec.refresh_budget(json_body(body))
            except ApiError as exc:  # the next reserve, release or edit recomputes it
                log.warning("Refreshing agentbudget %s/%s failed: %s", namespace,
                            body.get("metadata", {}).get("name"), exc)
        rec.wake_queued(namespace)
