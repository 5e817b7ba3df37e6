"""A 44-step task that cannot fit its context window, run with ``tether run`` (the reference
agent, the real sidecar): uninterrupted, and killed twice with SIGKILL (the agent just after a
context boundary, then the sidecar after a later one). Both end with the same answer, which the
scripted model computes from the ledger entries the final request carries: only the
context_archive tool can give back the ones that were archived. Each compaction's archivable
tier is summarised once, across the restarts.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tether_cli.run import LocalRun
from tether_examples import fault_tools, scripted_model
from tether_examples._script import load_script
from tether_examples._serve import serve_in_thread
from tether_sidecar.checkpoints import decode

SCRIPT = Path(__file__).parents[2] / "examples" / "scripts" / "long_task.yaml"
ANSWER = "FINAL: 10 ledger entries, total 281"  # the ten entries of the script, all of them


@dataclass
class Rig:
    model: str
    task_path: Path

    def summaries(self) -> list[str]:
        """The transcripts the model was asked to summarise, in order."""
        got = httpx.get(self.model + "/_scripted/requests", timeout=5).json()
        return [r["body"]["messages"][0]["content"] for r in got
                if "Summarize the conversation" in str(r["body"]["messages"][0]["content"])]


def task_doc(model: str, tools: str) -> dict[str, Any]:
    return {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": "long", "uid": "5d2b9a10-2222-4333-8444-555566667777"},
        "spec": {
            "agent": {"image": "tether/agent:dev",
                      "command": ["python", "-m", "tether_examples.reference_agent"]},
            "task": {"instructions": "Record the ledger, read the pages, report the total."},
            "model": {"provider": "openai", "name": "gpt-4o", "baseURL": model + "/v1",
                      "allowPlaintextHTTP": True},  # the double on 127.0.0.1
            "tools": [{"name": "search", "url": tools + "/ok"}],
            "contextBudget": {"maxTokens": 3000, "keepLastToolResults": 1},
            "costEnvelope": {"hardLimitUSD": "5.00"},
            "retryPolicy": {"calls": {"initialInterval": "10ms", "maxAttempts": 3}},
        },
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("context")
    with serve_in_thread(scripted_model.build_app(load_script(SCRIPT))) as model, \
            serve_in_thread(fault_tools.build_app()) as tools:
        path = work / "task.yaml"
        path.write_text(yaml.safe_dump(task_doc(model, tools)))
        yield Rig(model, path)


def boundaries(state_dir: Path) -> int:
    return len(list((state_dir / "context").glob("boundary-*.json")))


def attempt(rig: Rig, state_dir: Path, kill: str | None = None, after: int = 0) -> int | None:
    """One attempt; with ``kill``, SIGKILL that process once ``after`` boundaries are on the
    volume. Returns the agent's exit code."""
    run = LocalRun(rig.task_path, state_dir)
    run.start()
    assert run.agent is not None and run.sidecar is not None
    deadline = time.monotonic() + 180
    while kill and run.agent.poll() is None and boundaries(state_dir) < after:
        assert time.monotonic() < deadline, (state_dir / "agent.log").read_text()
        time.sleep(0.01)
    if kill and run.agent.poll() is None:
        (run.agent if kill == "agent" else run.sidecar).send_signal(signal.SIGKILL)
    rc = run.agent.wait(180)
    run.finish(rc)
    return rc


def summary_keys(state_dir: Path) -> set[tuple[int, str]]:
    """The archivable tiers the boundaries on the volume stand for (a boundary written again
    for a resent history reuses its summary: same key)."""
    docs = [decode(p.read_bytes())[1] for p in (state_dir / "context").glob("boundary-*.json")]
    return {(d["covered"], d["digest"]) for d in docs}


def answer(state_dir: Path) -> Any:
    ckpts = sorted((state_dir / "checkpoints").glob("ckpt-*.json"))
    return json.loads(ckpts[-1].read_bytes().split(b"\n", 1)[1])["state"]["result"]


def test_long_task_killed_twice_ends_with_the_uninterrupted_answer(rig: Rig,
                                                                   tmp_path: Path) -> None:
    httpx.post(rig.model + "/_scripted/reset", json={})
    base = tmp_path / "uninterrupted"
    assert attempt(rig, base) == 0, (base / "agent.log").read_text()
    assert answer(base) == ANSWER
    summaries = rig.summaries()
    assert boundaries(base) >= 3
    assert len(set(summaries)) == len(summaries) == len(summary_keys(base))

    httpx.post(rig.model + "/_scripted/reset", json={})
    killed = tmp_path / "killed"
    assert attempt(rig, killed, "agent", after=2) != 0
    assert attempt(rig, killed, "sidecar", after=4) != 0
    assert attempt(rig, killed) == 0, (killed / "agent.log").read_text()
    assert answer(killed) == ANSWER
    again = rig.summaries()
    # A restarted sidecar has lost the usage anchors of its estimate, so it may compact at
    # another step than the uninterrupted run did; but it never buys a summary twice.
    assert len(set(again)) == len(again) == len(summary_keys(killed))
    log = (killed / "agent.log").read_text()
    assert log.count("continuing from context boundary") >= boundaries(killed) - 1
