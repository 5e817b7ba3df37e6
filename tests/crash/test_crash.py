"""The crash test: a 20-step reference task killed with SIGKILL (agent, sidecar or both) at
random points, restarted each time, must end as if nothing happened.

For every crashed task: it ends Succeeded with the uninterrupted run's final state; at most one
model call per crash is re-executed upstream; each side-effecting tool call took effect exactly
once; and the ledger's spend is the uninterrupted run's plus exactly what was held for the calls
in flight at the kills (the journal's orphan and abort records say which).

TETHER_CRASH_KILLS sets the number of kills (default 100); the seed is printed for replays.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tether_cli.run import LocalRun
from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread

STEPS = 20
KILLS = int(os.environ.get("TETHER_CRASH_KILLS", "100"))


def script() -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    for i in range(STEPS - 1):
        tool = "record" if i % 3 == 2 else "search"
        turns.append({"content": f"step {i}", "delay": 0.02,
                      "tool_calls": [{"id": f"call_{i}", "name": tool, "arguments": {"i": i}}],
                      "usage": {"input_tokens": 100 + 10 * i, "output_tokens": 20}})
    turns.append({"content": "FINAL: 6 records written", "usage": {"input_tokens": 400,
                                                                    "output_tokens": 8}})
    return {"model": "gpt-4o", "turns": turns}


@dataclass
class Rig:
    model: str
    tools: str
    task_path: Path

    def reset(self) -> None:
        httpx.post(self.model + "/_scripted/reset", json={})
        httpx.post(self.tools + "/_reset")

    def model_requests(self) -> int:
        return len(httpx.get(self.model + "/_scripted/requests").json())

    def side_effects(self) -> list[str | None]:
        effects: list[str | None] = httpx.get(self.tools + "/_hits").json()["side_effects"]
        return effects


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("crash")
    with serve_in_thread(scripted_model.build_app(script())) as model, \
            serve_in_thread(fault_tools.build_app()) as tools:
        task = {
            "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": "crashy", "uid": "0c7a55e2-1111-4222-8333-444455556666"},
            "spec": {
                "agent": {"image": "tether/agent:dev",
                          "command": ["python", "-m", "tether_examples.reference_agent"]},
                "task": {"instructions": "Write the six records."},
                "model": {"provider": "openai", "name": "gpt-4o", "baseURL": model + "/v1",
                          "allowPlaintextHTTP": True},  # the double on 127.0.0.1
                "tools": [{"name": "search", "url": tools + "/ok"},
                          {"name": "record", "url": tools + "/side-effect", "sideEffects": True,
                           "idempotencyHeader": "Idempotency-Key"}],
                "costEnvelope": {"hardLimitUSD": "5.00"},
                "retryPolicy": {"calls": {"initialInterval": "10ms", "maxAttempts": 3}},
            },
        }
        path = work / "task.yaml"
        path.write_text(yaml.safe_dump(task))
        yield Rig(model, tools, path)


def final_state(state_dir: Path) -> Any:
    ckpts = sorted((state_dir / "checkpoints").glob("ckpt-*.json"))
    return json.loads(ckpts[-1].read_bytes().split(b"\n", 1)[1])["state"]


def run_once(rig: Rig, state_dir: Path, kill_at: float | None, victim: str,
             rng: random.Random) -> tuple[bool, float]:
    """One attempt; returns (agent finished by itself, seconds it ran)."""
    run = LocalRun(rig.task_path, state_dir)
    run.start()
    assert run.agent is not None and run.sidecar is not None
    t0 = time.monotonic()
    deadline = t0 + (kill_at if kill_at is not None else 120.0)
    while run.agent.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    finished = run.agent.poll() is not None
    if not finished:
        for proc in {"agent": [run.agent], "sidecar": [run.sidecar],
                     "both": [run.agent, run.sidecar]}[victim]:
            proc.send_signal(signal.SIGKILL)
        run.agent.wait(30)  # a sidecar-only kill makes the agent fail on its next call
    run.finish(run.agent.returncode)
    return finished and run.agent.returncode == 0, time.monotonic() - t0


def ledger_extra(state_dir: Path) -> Decimal:
    extra = Decimal(0)
    for line in (state_dir / "journal.jsonl").read_text().splitlines():
        doc = json.loads(line)
        if doc["t"] in ("orphan", "abort") and doc.get("usd"):
            extra += Decimal(doc["usd"])
    return extra


def test_killed_at_random_points_ends_as_if_nothing_happened(rig: Rig, tmp_path: Path) -> None:
    rig.reset()
    base_dir = tmp_path / "baseline"
    done, duration = run_once(rig, base_dir, None, "none", random.Random(0))
    assert done, (base_dir / "agent.log").read_text()
    baseline = {"state": final_state(base_dir), "requests": rig.model_requests(),
                "effects": len(rig.side_effects()),
                "spent": Decimal(json.loads((base_dir / "status.json").read_text())["spentUSD"])}
    assert baseline["state"]["result"].startswith("FINAL") and baseline["effects"] == 6

    seed = int(os.environ.get("TETHER_CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash test seed {seed}, {KILLS} kills, uninterrupted run {duration:.2f}s")
    rng = random.Random(seed)
    kills, tasks = 0, 0
    while kills < KILLS:
        rig.reset()
        tasks += 1
        state = tmp_path / f"task{tasks}"
        task_kills = 0
        while True:
            kill_at = rng.uniform(0.0, duration) if kills < KILLS else None
            victim = rng.choice(["agent", "sidecar", "both"])
            finished, _ = run_once(rig, state, kill_at, victim, rng)
            if finished:
                break
            kills += 1
            task_kills += 1
            assert task_kills < 200, "no progress across restarts"
        status = json.loads((state / "status.json").read_text())
        assert status["phase"] == "Succeeded"
        assert final_state(state) == baseline["state"]
        effects = rig.side_effects()
        assert len(effects) == baseline["effects"] and len(set(effects)) == len(effects)
        assert rig.model_requests() <= baseline["requests"] + task_kills
        # status shows USD to 6 decimals; holds carry more, so allow one rounding step each side
        expected = baseline["spent"] + ledger_extra(state)
        assert abs(Decimal(status["spentUSD"]) - expected) <= Decimal("0.000001")
    print(f"{kills} kills over {tasks} task(s), all Succeeded with the baseline's final state")
