"""The completion benchmark's tether arm: each task an AgentTask run by ``tether run``.

The AgentTask keeps every harness default — retry policy, verification defaults, context budget
(the model's window), checkpoints — and states only what describes the task's world: the model
(gpt-4o, the double's URL and its context window), the two tools (URL, the 2 s timeout every arm
uses, and what a correct answer holds: required fields and a JSON Schema), a hard limit no task
comes near, and the agent: the reference agent, allowed 100 steps (a 40-key task with retries
and an archive read needs more than its default 50).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.bench._completion_tasks import INSTRUCTIONS, MODEL, BenchTask, mix

__all__ = ["TOOL_VERIFY", "agenttask", "run_tether_task"]

TOOL_VERIFY: dict[str, dict[str, Any]] = {
    "lookup": {"requiredFields": ["key", "value"], "schema": {
        "type": "object", "required": ["key", "value"],
        "properties": {"key": {"type": "string"}, "value": {"type": "integer"}}}},
    "read_page": {"requiredFields": ["key", "text"], "schema": {
        "type": "object", "required": ["key", "text"],
        "properties": {"key": {"type": "string"}, "text": {"type": "string"}}}},
}


def agenttask(task: BenchTask, model_url: str, tools_url: str, run: str) -> dict[str, Any]:
    """The AgentTask of one bench task; `model_url`/`tools_url` are the doubles' base URLs."""
    timeout = f"{int(mix().tool_timeout)}s"
    return {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": task.id, "namespace": "bench"},
        "spec": {
            "agent": {"image": "tether/agent:dev",
                      "command": ["python", "-m", "tether_examples.reference_agent"],
                      "env": [{"name": "AGENT_MAX_STEPS", "value": "100"}]},
            "task": {"instructions": INSTRUCTIONS, "inputs": task.inputs},
            "model": {"provider": "openai", "name": MODEL, "baseURL": f"{model_url}/{run}/v1",
                      "allowPlaintextHTTP": True,
                      "contextWindow": int(mix().tasks["contextWindow"])},
            "tools": [{"name": name, "url": f"{tools_url}/bench/{run}/{name}",
                       "timeout": timeout, "verify": verify}
                      for name, verify in TOOL_VERIFY.items()],
            "costEnvelope": {"hardLimitUSD": "5.00"},
        },
    }


def run_tether_task(task: BenchTask, model_url: str, tools_url: str, run: str,
                    workdir: Path) -> tuple[str, str]:
    """Run one task with ``tether run``; (phase, the agent's answer)."""
    path = workdir / f"{task.id}.yaml"
    path.write_text(yaml.safe_dump(agenttask(task, model_url, tools_url, run)))
    state = workdir / task.id
    proc = subprocess.run(
        [sys.executable, "-m", "tether_cli", "run", str(path), "--state-dir", str(state),
         "--quiet"], capture_output=True, text=True, timeout=900, check=False)
    status_file = state / "status.json"
    if not status_file.exists():
        return f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}", ""
    phase = str(json.loads(status_file.read_text()).get("phase"))
    out = (state / "agent.out").read_text(errors="replace").strip()
    return phase, out.splitlines()[-1] if out else ""
