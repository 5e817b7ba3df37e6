"""``tether-sidecar``: run the harness for one AgentTask.

    tether-sidecar --task agenttask.yaml --state-dir DIR --secrets-dir DIR \
                   --port 8181 --ops-port 9090

Exit codes: 0 after a clean stop, 2 when the configuration cannot work (the message says what to
change). Once both ports are bound it prints ``tether-sidecar ready agent=… ops=…`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from . import taskfile
from .app import agent_app, ops_app
from .errors import SidecarError, StartupError
from .harness import Harness
from .settings import Settings
from .tracing import ATTR

__all__ = ["main"]

log = logging.getLogger("tether_sidecar")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether-sidecar", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", type=Path, help="AgentTask YAML")
    p.add_argument("--state-dir", type=Path, help="the PVC: ledger, journal, checkpoints, spans")
    p.add_argument("--secrets-dir", type=Path, help="mounted Secrets, DIR/<secret>/<key>")
    p.add_argument("--port", type=int, help="agent port on 127.0.0.1 (default 8181; 0 = any)")
    p.add_argument("--ops-port", type=int, help="metrics and probes port (default 9090)")
    p.add_argument("--ops-host", help="ops listen address (default 0.0.0.0)")
    p.add_argument("--max-body-bytes", type=int, help="largest request body accepted")
    p.add_argument("--max-response-bytes", type=int,
                   help="largest upstream response body read whole (after decoding)")
    p.add_argument("--ca-bundle", type=Path,
                   help="PEM CA certificates trusted for HTTPS besides the system store")
    p.add_argument("--attempt", type=int, help="pod attempt number")
    p.add_argument("--termination-log", type=Path)
    p.add_argument("--grace-seconds", type=float, help="on SIGTERM, time for calls in flight")
    p.add_argument("--model-timeout-seconds", type=float,
                   help="one model attempt's limit (default 600; a stream: on silence)")
    p.add_argument("--hold-wait-seconds", type=float,
                   help="wait for other calls' holds before a 429 budget_contended (default 30)")
    p.add_argument("--prior-spent-usd", help="USD spent by earlier attempts (status.spentUSD)")
    p.add_argument("--prior-input-tokens", type=int, help="input tokens of earlier attempts")
    p.add_argument("--prior-output-tokens", type=int, help="output tokens of earlier attempts")
    p.add_argument("--task-poll-seconds", type=float,
                   help="how often the task file is checked for a changed costEnvelope")
    p.add_argument("--log-level")
    return p


def load_settings(argv: list[str] | None) -> Settings:
    args = {k: v for k, v in vars(_parser().parse_args(argv)).items() if v is not None}
    try:
        return Settings(**args)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors(include_url=False))
        raise StartupError(f"invalid sidecar settings: {problems}") from exc


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
        h.tracing.attempt_done({"tether.aborted_calls": aborted, ATTR.COST:
                                float(h.ledger.spent_usd)})
        await h.aclose()
        write_summary(h, aborted)


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


# Kubernetes keeps at most 4 KiB of a termination message; what the operator reads of it.
TERMINATION_LIMIT = 4096
_ESSENTIAL = ("phase", "step", "spentUSD", "reservedUSD", "hardLimitUSD", "softLimitUSD",
              "generation", "inputTokens", "outputTokens", "retries", "lastCheckpoint",
              "traceID", "abortedCalls")


def termination_message(doc: dict[str, Any]) -> bytes:
    """``doc`` as JSON within Kubernetes' limit: whole if it fits, else only the fields the
    operator reads — never JSON cut short, which the operator could not read at all."""
    data = orjson.dumps(doc)
    if len(data) <= TERMINATION_LIMIT:
        return data
    log.warning("Termination summary is %d bytes, over %d: writing only %s", len(data),
                TERMINATION_LIMIT, ", ".join(_ESSENTIAL))
    return orjson.dumps({k: doc[k] for k in _ESSENTIAL if k in doc})


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


async def _run(settings: Settings) -> None:
    h = Harness.create(settings)
    # Start-up built a large, long-lived heap (pydantic models, prices, aiohttp); freezing it
    # keeps the collector from walking it again on every full collection during calls. No
    # collection first: it found ~20 unreachable objects and took ~50 ms of start-up.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(h, stop)


def main(argv: list[str] | None = None) -> None:
    try:
        settings = load_settings(argv)
        logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            import uvloop
        except ImportError:
            runner = asyncio.run
        else:
            runner = uvloop.run
        runner(_run(settings))
    except StartupError as exc:
        print(f"tether-sidecar: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
