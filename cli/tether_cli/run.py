"""``tether run``: the sidecar and the agent as local processes, like the pod runs them.

The agent's ``command``/``args``/``env`` run on this machine (the image is not used); it gets the
same variables it gets in a pod: ``OPENAI_BASE_URL`` (ending in ``/v1``), ``ANTHROPIC_BASE_URL``,
``TETHER_URL``, dummy ``OPENAI_API_KEY``/``ANTHROPIC_API_KEY``, and the task. Running again on the
same state dir resumes: the attempt number goes up and the sidecar reloads its journal, ledger
and checkpoints. ``status.json`` in the state dir holds the AgentTask status fields.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from tether_api import AgentTask, InvalidAgentTask, load_agenttask
from tether_sidecar.pricing import resolve as resolve_price

__all__ = ["LocalRun", "agent_env", "run_task"]

EXIT_OK, EXIT_FAILED, EXIT_BUDGET, EXIT_USAGE = 0, 1, 3, 2


def agent_env(task: AgentTask, sidecar_url: str, attempt: int) -> dict[str, str]:
    """The variables the agent sees; the operator sets the same ones in the pod."""
    spec = task.spec
    return {
        "OPENAI_BASE_URL": f"{sidecar_url}/v1",
        "ANTHROPIC_BASE_URL": sidecar_url,
        "TETHER_URL": sidecar_url,
        "OPENAI_API_KEY": "tether-sidecar-holds-the-key",
        "ANTHROPIC_API_KEY": "tether-sidecar-holds-the-key",
        "TETHER_TASK_NAME": task.metadata.name,
        "TETHER_TASK_NAMESPACE": task.metadata.namespace,
        "TETHER_TASK_INSTRUCTIONS": spec.task.instructions,
        "TETHER_TASK_INPUTS": json.dumps(spec.task.inputs),
        "TETHER_MODEL": spec.model.name,
        "TETHER_TOOLS": ",".join(t.name for t in spec.tools if t.mcp is None),  # as the operator
        "TETHER_MCP_SERVERS": ",".join(t.name for t in spec.tools if t.mcp is not None),
        "TETHER_ATTEMPT": str(attempt),
        **{e.name: e.value for e in spec.agent.env},
    }


def _next_attempt(state_dir: Path) -> int:
    path = state_dir / "attempts"
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    return attempt


@dataclass
class LocalRun:
    task_path: Path
    state_dir: Path
    secrets_dir: Path | None = None
    sidecar_args: tuple[str, ...] = ()
    task: AgentTask = field(init=False)
    attempt: int = 0
    sidecar: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    url: str = ""
    ops_url: str = ""

    def __post_init__(self) -> None:
        self.task = load_agenttask(self.task_path)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 30.0) -> None:
        self.attempt = _next_attempt(self.state_dir)
        secrets = self.secrets_dir or self.state_dir / ".no-secrets"
        cmd = [sys.executable, "-m", "tether_sidecar", "--task", str(self.task_path),
               "--state-dir", str(self.state_dir), "--secrets-dir", str(secrets),
               "--port", "0", "--ops-port", "0", "--ops-host", "127.0.0.1",
               "--attempt", str(self.attempt),
               "--termination-log", str(self.state_dir / "termination.json"),
               *self.sidecar_args]
        # Resolved here, as the operator does, so the sidecar's start-up skips genai-prices.
        if (price := resolve_price(self.task.spec.model)) is not None:
            cmd += ["--model-price", price]
        with (self.state_dir / "sidecar.log").open("ab") as log:
            self.sidecar = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        self.url = self._await_ready(timeout)
        argv = [*self.task.spec.agent.command, *self.task.spec.agent.args]
        if not argv:
            raise InvalidAgentTask(str(self.task_path), [
                "spec.agent.command: required for tether run (the image's entrypoint is not "
                "used locally)"])
        if argv[0] in ("python", "python3"):  # the interpreter tether itself runs under
            argv[0] = sys.executable
        env = {**os.environ, **agent_env(self.task, self.url, self.attempt)}
        # Files, not pipes: an agent that prints a lot must never block on a full pipe.
        with (self.state_dir / "agent.log").open("ab") as log, \
                (self.state_dir / "agent.out").open("wb") as out:
            self.agent = subprocess.Popen(argv, stdout=out, stderr=log, env=env)

    def _await_ready(self, timeout: float) -> str:
        assert self.sidecar is not None and self.sidecar.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sidecar.stdout], [], [], 0.2)
            if ready:
                line = self.sidecar.stdout.readline().decode()
                if line.startswith("tether-sidecar ready"):
                    urls = dict(p.split("=", 1) for p in line.split()[2:])
                    self.ops_url = urls["ops"]
                    return urls["agent"]
            if self.sidecar.poll() is not None:
                break
        self.sidecar.kill()
        log = (self.state_dir / "sidecar.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the sidecar did not start:\n{log}")

    def status(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = httpx.get(self.url + "/status", timeout=2).json()
        except httpx.HTTPError:
            return None  # between polls the sidecar may be stopping; the summary is final
        return doc

    def finish(self, agent_rc: int | None) -> dict[str, Any]:
        """Stop the sidecar gracefully and write status.json from its final summary."""
        if self.sidecar is not None and self.sidecar.poll() is None:
            self.sidecar.send_signal(signal.SIGTERM)
            try:
                self.sidecar.wait(60)
            except subprocess.TimeoutExpired:
                self.sidecar.kill()
                self.sidecar.wait()
        summary_path = self.state_dir / "termination.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        phase = "Succeeded" if agent_rc == 0 else "Failed"
        if summary.get("phase") == "BudgetExceeded":
            phase = "BudgetExceeded"
        status = {
            "phase": phase, "attempt": self.attempt, "podName": None,
            **{k: summary.get(k) for k in ("step", "spentUSD", "inputTokens", "outputTokens",
                                           "retries", "lastCheckpoint", "traceID")},
            "evictions": 0,
            "message": _message(phase, agent_rc, summary),
        }
        tmp = self.state_dir / "status.json.tmp"
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        tmp.replace(self.state_dir / "status.json")
        if self.sidecar is not None and self.sidecar.stdout is not None:
            self.sidecar.stdout.close()
        return status


def _message(phase: str, rc: int | None, summary: dict[str, Any]) -> str:
    if phase == "Succeeded":
        return "the agent finished"
    if phase == "BudgetExceeded":
        return (f"hard limit reached: spent {summary.get('spentUSD')} of "
                f"{summary.get('hardLimitUSD')} USD")
    return f"the agent exited with code {rc}"


def _progress(status: dict[str, Any], out: TextIO, tty: bool) -> None:
    hits = status["limitHits"]
    line = (f"step {status['step']} · ${status['spentUSD']} of ${status['hardLimitUSD']}"
            f" · {status['llmCalls']} model / {status['toolCalls']} tool calls"
            f" · {status['retries']} retries"
            + (f" · {status['replayed']} replayed" if status["replayed"] else "")
            + (" · SOFT LIMIT PASSED" if hits["soft"] else "")
            + (" · HARD LIMIT" if hits["hard"] else ""))
    width = shutil.get_terminal_size().columns if tty else 0
    out.write(("\r" + line[:width - 1].ljust(width - 1)) if tty else line + "\n")
    out.flush()


def run_task(task_path: Path, state_dir: Path, secrets_dir: Path | None, *,
             quiet: bool = False, metrics_port: int = 0, out: TextIO = sys.stderr) -> int:
    done = state_dir / "status.json"
    if done.exists() and json.loads(done.read_text()).get("phase") == "Succeeded":
        print(f"tether: {task_path} already Succeeded in {state_dir}", file=out)
        print(done.read_text(), end="")
        return EXIT_OK
    if secrets_dir is None and (state_dir.parent / "secrets").is_dir():
        secrets_dir = state_dir.parent / "secrets"
    try:
        # A fixed ops port lets a Prometheus scrape the run (the sidecar binds 127.0.0.1 here).
        ops = ("--ops-port", str(metrics_port)) if metrics_port else ()
        run = LocalRun(task_path, state_dir, secrets_dir, sidecar_args=ops)
        run.start()
    except (InvalidAgentTask, RuntimeError) as exc:
        print(f"tether run: {exc}", file=out)
        return EXIT_USAGE
    assert run.agent is not None
    if not quiet:
        print(f"tether: metrics at {run.ops_url}/metrics", file=out)
    tty, last = out.isatty(), None
    while run.agent.poll() is None:
        status = run.status()
        if status and not quiet and status != last:
            _progress(status, out, tty)
            last = status
        time.sleep(0.5)
    answer = (state_dir / "agent.out").read_text(errors="replace")
    status = run.finish(run.agent.returncode)
    if tty and not quiet:
        out.write("\n")
    print(f"tether: {status['phase']} at step {status['step']}, spent {status['spentUSD']} USD "
          f"(attempt {status['attempt']}); status in {done}", file=out)
    if answer:
        print(answer, end="")
    return {"Succeeded": EXIT_OK, "BudgetExceeded": EXIT_BUDGET}.get(status["phase"],
                                                                     EXIT_FAILED)
