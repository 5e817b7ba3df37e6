"""The reference agent's fault option, run for real under the local harness (sidecar process,
scripted model and tool doubles on 127.0.0.1): ``AGENT_EXIT_AT_STEP`` makes it exit non-zero
right after that step's checkpoint, and the next run resumes from that checkpoint and finishes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests._obs import free_port, wait_for
from tether_cli.run import LocalRun
from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread


def _script(steps: int) -> dict[str, object]:
    turns: list[dict[str, object]] = [
        {"content": f"step {i}", "usage": {"input_tokens": 50, "output_tokens": 5},
         "tool_calls": [{"id": f"call_{i}", "name": "search", "arguments": {"i": i}}]}
        for i in range(steps - 1)]
    turns.append({"content": "FINAL", "usage": {"input_tokens": 60, "output_tokens": 2}})
    return {"model": "gpt-4o", "turns": turns}


def _agenttask(name: str, n: int, model: str, tools: str, env: list[dict[str, str]] | None = None,
               pricing: dict[str, str] | None = None) -> dict[str, Any]:
    """The reference agent's AgentTask against the scripted model and the tool double."""
    agent: dict[str, Any] = {"image": "tether/agent:dev",
                             "command": ["python", "-m", "tether_examples.reference_agent"]}
    if env:
        agent["env"] = env
    llm: dict[str, Any] = {"provider": "openai", "name": "gpt-4o", "baseURL": model + "/v1",
                           "allowPlaintextHTTP": True}
    if pricing:
        llm["pricing"] = pricing
    return {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": name, "uid": f"0c7a55e2-1111-4222-8333-{444455550000 + n}"},
        "spec": {"agent": agent, "task": {"instructions": "Search twice."}, "model": llm,
                 "tools": [{"name": "search", "url": tools + "/ok"}],
                 "costEnvelope": {"hardLimitUSD": "1.00"}},
    }


@pytest.fixture
def task_file(tmp_path: Path) -> Iterator[Path]:
    with serve_in_thread(scripted_model.build_app(_script(4))) as model, \
            serve_in_thread(fault_tools.build_app()) as tools:
        env = [{"name": "AGENT_EXIT_AT_STEP", "value": "2"},
               {"name": "AGENT_EXIT_CODE", "value": "7"}]
        task = _agenttask("crashy", 0, model, tools, env,
                          pricing={"inputPerMTok": "1.00", "outputPerMTok": "2.00"})
        path = tmp_path / "task.yaml"
        path.write_text(yaml.safe_dump(task))
        yield path


def _run(task_file: Path, state_dir: Path) -> int:
    run = LocalRun(task_file, state_dir)
    run.start()
    assert run.agent is not None
    code = run.agent.wait(60)
    run.finish(code)
    return code


def test_exits_with_the_code_after_the_step_then_resumes_past_it(task_file: Path,
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _run(task_file, state) == 7
    checkpoints = sorted((state / "checkpoints").glob("ckpt-*.json"))
    saved = json.loads(checkpoints[-1].read_bytes().split(b"\n", 1)[1])
    assert saved["step"] == 2 and not saved["state"]["done"]  # the step was kept before exiting

    assert _run(task_file, state) == 0  # resumed at step 2: the exit step is behind it


def test_tether_run_serves_metrics_on_the_port_asked(tmp_path: Path) -> None:
    """`tether run --metrics-port P`: a Prometheus can scrape the run's sidecar at a known
    address while the agent works (issue #11's incident replay scrapes a run this way)."""
    script = _script(3)
    turns: Any = script["turns"]
    for turn in turns:
        turn["delay"] = 0.5  # the run lasts long enough to be scraped while it works
    port = free_port()
    with serve_in_thread(scripted_model.build_app(script)) as model, \
            serve_in_thread(fault_tools.build_app()) as tools:
        task = _agenttask("scraped", 1, model, tools)
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(task))
        cmd = [sys.executable, "-m", "tether_cli", "run", str(tmp_path / "t.yaml"),
               "--state-dir", str(tmp_path / "state"), "--metrics-port", str(port)]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            def scraped() -> str | None:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except httpx.HTTPError:
                    return None
                return text if 'tether_llm_calls_total{' in text else None
            metrics = wait_for(scraped, 30, f"the run's metrics on port {port}")
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert 'task="scraped"' in metrics
    assert f"metrics at http://127.0.0.1:{port}/metrics" in err
    assert out.strip() == "FINAL"
