"""tether_agent: what an agent needs from its harness, over plain HTTP, with the stdlib only.

    from tether_agent import Harness
    h = Harness()                      # TETHER_URL, set by the operator and by `tether run`
    ckpt = h.resume()                  # None on a fresh start
    h.checkpoint(step, state)          # after every step; raises if the state was not saved
    result = h.tool("search", {"q": "..."})   # raises ToolError with the class and reason
    ctx = h.context()                  # after a model call answered X-Tether-Context-Boundary
    ctx = h.boundary(messages)         # or compact the history now, at a point the agent picks
    h.finish(answer)                   # the task's final answer (any JSON), once
    exit_on_sigterm()                  # at start: an evicted agent stops at once, even as PID 1

Model calls go through the official SDKs unchanged (OPENAI_BASE_URL / ANTHROPIC_BASE_URL point
at the sidecar). Every endpoint is plain HTTP + JSON, so agents in other languages need no SDK:
``GET|PUT /checkpoint``, ``POST /tools/{name}``, ``PUT /result``, ``GET /context``,
``POST /context/boundary``, ``GET /status``.

It does not retry anything: the sidecar already did, by policy. An error here is final.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["BudgetExceeded", "Checkpoint", "Harness", "HarnessError", "ToolError",
           "exit_on_sigterm", "task"]


class HarnessError(Exception):
    """The sidecar refused or failed a request; ``error_class`` and ``reason`` say why."""

    def __init__(self, status: int, error_class: str, reason: str, body: Any = None) -> None:
        super().__init__(f"{error_class}: {reason}")
        self.status = status
        self.error_class = error_class
        self.reason = reason
        self.body = body


class ToolError(HarnessError):
    """A tool call failed for good: retryable_exhausted, non_retryable, verification_failed."""


class BudgetExceeded(HarnessError):
    """The task's hard limit was reached: checkpoint what you have and stop."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    state: Any
    generation: int
    sha256: str
    time: float


def task() -> tuple[str, dict[str, Any]]:
    """The task's instructions and inputs, as the harness passes them in the environment."""
    return (os.environ.get("TETHER_TASK_INSTRUCTIONS", ""),
            json.loads(os.environ.get("TETHER_TASK_INPUTS") or "{}"))


def exit_on_sigterm() -> None:
    """Exit at once on SIGTERM, with 143 as the default action would report. As a container's PID
    1 an agent gets no default action at all (the kernel drops a signal PID 1 has no handler
    for), so an evicted agent would run on through the pod's grace period and be SIGKILLed. An
    agent that checkpoints every step has nothing to save first. A handler already set by
    whoever runs the agent is kept."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stopped)


def _stopped(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class Harness:
    def __init__(self, url: str | None = None, timeout: float = 600.0) -> None:
        self.url = (url or os.environ.get("TETHER_URL") or "http://127.0.0.1:8181").rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, _parse(resp.read())
        except urllib.error.HTTPError as exc:
            body = _parse(exc.read())
            error = body.get("error", {}) if isinstance(body, dict) else {}
            cls = error.get("class") or error.get("type") or "http_error"
            reason = error.get("reason") or error.get("message") or str(exc)
            kind = {"budget_exceeded": BudgetExceeded}.get(cls, ToolError if path.startswith(
                "/tools/") else HarnessError)
            raise kind(exc.code, cls, reason, body) from exc

    def resume(self) -> Checkpoint | None:
        """The checkpoint to resume from, or None on a fresh start. Damaged checkpoints raise:
        starting over silently would redo (and re-pay for) the work they held."""
        try:
            _, doc = self._request("GET", "/checkpoint")
        except HarnessError as exc:
            if exc.error_class == "no_checkpoint":
                return None
            raise
        return Checkpoint(doc["step"], doc["state"], doc["generation"], doc["sha256"],
                          doc["time"])

    def checkpoint(self, step: int, state: Any) -> dict[str, Any]:
        _, doc = self._request("PUT", "/checkpoint", {"step": step, "state": state})
        return dict(doc)

    def tool(self, name: str, payload: Any = None) -> Any:
        _, doc = self._request("POST", f"/tools/{name}", payload if payload is not None else {})
        return doc

    def finish(self, answer: Any) -> dict[str, Any]:
        """Report the task's final answer (any JSON value). Stored on the volume; the same
        answer again is accepted (a retry after a lost response), a different one raises
        HarnessError ``result_conflict``: the answer is final. Evaluation policies check it."""
        _, doc = self._request("PUT", "/result", {"answer": answer})
        return dict(doc)

    def context(self) -> dict[str, Any] | None:
        """The latest context boundary: ``{"boundary": n, "messages": [...], "summary": ...}``,
        ``messages`` being the compact history the sidecar sent at that compaction (permanent
        tier, summary note, working tier). Replace the history with it when a model response
        carries ``X-Tether-Context-Boundary``; checkpoint it, and a resumed attempt starts from
        the compact form. None before the first boundary."""
        _, doc = self._request("GET", "/context")
        return dict(doc) if doc.get("boundary") is not None else None

    def boundary(self, messages: list[Any], system: Any = None) -> dict[str, Any]:
        """Mark a context boundary now (at the end of a phase of the task, say): the sidecar
        compacts ``messages`` (the history as sent to the model; ``system`` for an anthropic
        task) whatever their size, writes the boundary and returns it, as :meth:`context`
        does. Continue from its ``messages``. Raises HarnessError (400) when nothing in them
        can be archived."""
        payload: dict[str, Any] = {"messages": messages}
        if system is not None:
            payload["system"] = system
        _, doc = self._request("POST", "/context/boundary", payload)
        return dict(doc)

    def status(self) -> dict[str, Any]:
        _, doc = self._request("GET", "/status")
        return dict(doc)

    def budget_warning(self) -> str | None:
        """A sentence when the soft limit has been passed, else None."""
        s = self.status()
        if s["limitHits"]["soft"] or s["limitHits"]["hard"]:
            return f"spent {s['spentUSD']} of {s['hardLimitUSD']} USD (soft {s['softLimitUSD']})"
        return None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")
