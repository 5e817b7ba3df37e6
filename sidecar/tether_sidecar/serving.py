"""Serve one AgentTask: the agent and ops apps, the journal flusher, the task-file watcher, and
the termination summary at the end. ``cli.main`` imports this once the collector is paused."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aiohttp import web

from . import taskfile
from .app import agent_app, ops_app
from .cli import termination_message
from .errors import SidecarError, StartupError
from .harness import Harness
from .result_api import load_result
from .settings import Settings
from .tracing import ATTR

__all__ = ["run", "serve", "write_summary"]

log = logging.getLogger("tether_sidecar")


async def serve(h: Harness, stop: asyncio.Event) -> None:
    s = h.settings
    agent = web.AppRunner(agent_app(h), access_log=None, handle_signals=False,
                          shutdown_timeout=0.5)
    ops = web.AppRunner(ops_app(h), access_log=None, handle_signals=False)
    await agent.setup()
    await ops.setup()
    try:
        agent_site = web.TCPSite(agent, "127.0.0.1", s.port, reuse_address=True)
        ops_site = web.TCPSite(ops, s.ops_host, s.ops_port, reuse_address=True)
        try:
            await agent_site.start()
            await ops_site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen: {exc.strerror} (is --port {s.port} or "
                               f"--ops-port {s.ops_port} taken?)") from exc
        ports = [site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                 for site in (agent_site, ops_site)]
        flusher = asyncio.create_task(_flush_journal(h))
        watcher = asyncio.create_task(_watch_task_file(h))
        h.ready = True
        print(f"tether-sidecar ready agent=http://127.0.0.1:{ports[0]} "
              f"ops=http://{s.ops_host}:{ports[1]}", flush=True)
        log.info("Serving task %s/%s", h.task.metadata.namespace, h.name)
        await stop.wait()
        flusher.cancel()
        watcher.cancel()
        h.ready = False
        log.info("Stopping task %s: %d call(s) in flight, grace %.0fs", h.name, h.in_flight,
                 s.grace_seconds)
        await agent_site.stop()  # no new calls; those in flight may finish
        deadline = asyncio.get_running_loop().time() + s.grace_seconds
        while h.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        aborted = h.in_flight
        await agent.cleanup()  # cancels what is still in flight: each records its abort
        await ops.cleanup()
        _trace_end(h, aborted)
        await h.aclose()
        write_summary(h, aborted)


def _trace_end(h: Harness, aborted: int) -> None:
    """The attempt's span, then the task's when this attempt ends the task (task_span.py)."""
    spent = h.ledger.spent_usd
    h.tracing.attempt_done({"tether.aborted_calls": aborted, ATTR.SPENT: float(spent),
                            ATTR.COST: float(spent - h.spent_at_start)})
    if h.phase == "BudgetExceeded":
        phase = "BudgetExceeded"
    elif load_result(h.settings.state_dir) is not None:  # the volume's truth, any attempt's
        phase = "Succeeded"
    else:
        return  # the task goes on in another attempt (or ends where the sidecar cannot see)
    if h.task_span is not None:
        h.task_span.send(h.tracing, h.name, phase, {
            ATTR.COST: float(spent), ATTR.SPENT: float(spent),
            ATTR.INPUT_TOKENS: h.ledger.input_tokens, ATTR.OUTPUT_TOKENS: h.ledger.output_tokens})


async def _flush_journal(h: Harness) -> None:
    """fdatasync the journal at most a second after a record (see journal.py: durability), in
    a worker thread: on the loop, each sync stalled every call in flight (~15 ms here)."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(h.journal.sync)
        except SidecarError as exc:
            log.error("Task %s: %s", h.name, exc.reason)


async def _watch_task_file(h: Harness) -> None:
    """Apply live edits of the task (taskfile.py); a small file, read on the loop."""
    while True:
        await asyncio.sleep(h.settings.task_poll_seconds)
        try:
            taskfile.check(h)
        except Exception:  # a bug of ours: said loudly, and the old spec stays enforced
            log.exception("Task %s: checking the task file %s failed", h.name, h.settings.task)


def write_summary(h: Harness, aborted: int) -> None:
    """The final word for the operator: Kubernetes shows the termination message (≤ 4 KiB)
    in the container's status after it ends."""
    doc = {k: v for k, v in h.status().items() if k not in ("checkpointProblem", "priceSource")}
    doc["abortedCalls"] = aborted
    path = h.settings.termination_log
    try:
        path.write_bytes(termination_message(doc))
    except OSError as exc:
        log.error("Cannot write the termination summary to %s: %s", path, exc.strerror)


async def run(settings: Settings) -> None:
    h = Harness.create(settings)
    # Start-up built a large, long-lived heap (pydantic models, prices, aiohttp); freezing it
    # keeps the collector from walking it again on every full collection during calls. No
    # collection first: it found ~20 unreachable objects and took ~50 ms of start-up.
    gc.freeze()
    gc.enable()  # paused by cli.main while start-up's heap was built
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(h, stop)
