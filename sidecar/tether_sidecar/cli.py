"""``tether-sidecar``: run the harness for one AgentTask.

    tether-sidecar --task agenttask.yaml --state-dir DIR --secrets-dir DIR \
                   --port 8181 --ops-port 9090

Exit codes: 0 after a clean stop, 2 when the configuration cannot work (the message says what to
change). Once both ports are bound it prints ``tether-sidecar ready agent=… ops=…`` on stdout.

This module stays light: the harness (``serving.py``, and through it aiohttp, pydantic, the
task's models, prices) is imported inside :func:`main` once the garbage collector is paused.
Start-up builds a large heap that lives as long as the process; collecting it again and again
while the modules load cost ~60 ms of CPU (docs/benchmarks.md, the footprint section). Once it
is built it is frozen and the collector resumes (``serving.run``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .errors import StartupError

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["TERMINATION_LIMIT", "load_settings", "main", "termination_message"]

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
    p.add_argument("--model-price", help="the model's price resolved by the operator or "
                   "tether run (pricing.resolve); absent: resolved at start-up")
    p.add_argument("--task-poll-seconds", type=float,
                   help="how often the task file is checked for a changed costEnvelope")
    p.add_argument("--log-level")
    return p


def load_settings(argv: list[str] | None) -> Settings:
    from pydantic import ValidationError

    from .settings import Settings

    args = {k: v for k, v in vars(_parser().parse_args(argv)).items() if v is not None}
    try:
        return Settings(**args)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise StartupError(f"invalid sidecar settings: {problems}") from exc


def _where(loc: tuple[int | str, ...]) -> str:
    """A flag (``--max-body-bytes``), or a variable of its own (``TETHER_EVALUATION.policies``)."""
    parts = [str(p) for p in loc]
    if parts and parts[0].startswith("TETHER_"):
        return ".".join(parts)
    return "--" + "-".join(parts).replace("_", "-")


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


def main(argv: list[str] | None = None) -> None:
    gc.disable()  # until start-up's heap is built and frozen (module docstring; serving.run)
    # The first model pydantic builds looks for plugins: an entry-point scan of every installed
    # package, 1.3 % of start-up's instructions. The sidecar uses none; this is pydantic's own
    # switch (pydantic/pydantic#8767, "Pydantic Plugins" in its docs), set here, before any
    # model is built, so every way of starting the sidecar gets it. Whoever starts it may still
    # choose (PYDANTIC_DISABLE_PLUGINS="" loads them all). The sidecar starts no processes.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        settings = load_settings(argv)
        logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from .serving import run

        try:
            import uvloop
        except ImportError:
            runner = asyncio.run
        else:
            runner = uvloop.run
        runner(run(settings))
    except StartupError as exc:
        print(f"tether-sidecar: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
