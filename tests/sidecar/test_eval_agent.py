"""The reference agent reports its answer (``Harness.finish``) and, under ``tether run`` with an
evaluation policy, the evaluator double gets the task's record from the sidecar."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tether_cli.run import LocalRun
from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread

from ._eval_rig import evaluation_env, running_evaluator

SCRIPT = {"model": "gpt-4o", "turns": [
    {"content": "", "usage": {"input_tokens": 50, "output_tokens": 5},
     "tool_calls": [{"id": "call_0", "name": "search", "arguments": {"q": "x"}}]},
    {"content": "FINAL: 42 EUR", "usage": {"input_tokens": 60, "output_tokens": 4}}]}


def test_the_reference_agents_answer_reaches_the_evaluator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [{"name": "final", "regex": r"^FINAL: \d+ EUR$"}]
    with serve_in_thread(scripted_model.build_app(SCRIPT)) as model, \
            serve_in_thread(fault_tools.build_app()) as tools, running_evaluator() as (double, url):
        task = {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
                "metadata": {"name": "answers", "uid": "9d1f0000-2222-4333-8444-555566667777",
                             "labels": {"team": "eval"}},
                "spec": {"agent": {"image": "tether/agent:dev",
                                   "command": ["python", "-m", "tether_examples.reference_agent"]},
                         "task": {"instructions": "Find the total."},
                         "model": {"provider": "openai", "name": "gpt-4o",
                                   "baseURL": model + "/v1", "allowPlaintextHTTP": True,
                                   "pricing": {"inputPerMTok": "1.00", "outputPerMTok": "2.00"}},
                         "tools": [{"name": "search", "url": tools + "/ok"}],
                         "costEnvelope": {"hardLimitUSD": "1.00"}}}
        (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
        for name, value in evaluation_env(url, checks).items():
            monkeypatch.setenv(name, value)  # the sidecar's environment, as the operator sets it
        run = LocalRun(tmp_path / "task.yaml", tmp_path / "state")
        run.start()
        assert run.agent is not None
        code = run.agent.wait(60)
        run.finish(code)  # SIGTERM to the sidecar: the record is flushed before it exits
        assert code == 0
        record = double.only_record()
    assert (record["outcome"], record["answer"], record["labels"]) == (
        "answered", "FINAL: 42 EUR", {"team": "eval"})
    assert record["deterministic"]["checks"] == [
        {"policy": "quality", "name": "final", "passed": True, "reason": ""}]
    assert record["deterministic"]["spentUSD"] == "0.000128"  # 110 in at $1, 9 out at $2 /MTok
