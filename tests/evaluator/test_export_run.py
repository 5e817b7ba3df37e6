"""A failing case exported by ``tether eval export`` runs again under ``tether run``: its own
(redacted) task reaches the model through the template's agent, model and tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from tether_cli.run import LocalRun
from tether_eval.export import cases
from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread

SCRIPT = {"model": "gpt-4o", "turns": [
    {"content": "", "usage": {"input_tokens": 40, "output_tokens": 5},
     "tool_calls": [{"id": "call_0", "name": "search", "arguments": {"q": "ticket"}}]},
    {"content": "FINAL: rerun", "usage": {"input_tokens": 50, "output_tokens": 3}}]}


def _template(model: str, tools: str) -> dict[str, Any]:
    """How the cases should run now: the template's spec, with a placeholder task."""
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": "template", "namespace": "prod"},
            "spec": {"agent": {"image": "tether/agent:dev",
                               "command": ["python", "-m", "tether_examples.reference_agent"]},
                     "task": {"instructions": "replaced by each case"},
                     "model": {"provider": "openai", "name": "gpt-4o",
                               "baseURL": model + "/v1", "allowPlaintextHTTP": True,
                               "pricing": {"inputPerMTok": "1.00", "outputPerMTok": "2.00"}},
                     "tools": [{"name": "search", "url": tools + "/ok"}],
                     "costEnvelope": {"hardLimitUSD": "1.00"}}}


def test_an_exported_case_runs_again_with_tether_run(tmp_path: Path) -> None:
    failing = [{"uid": "4b0c1d2e-0000-4000-8000-000000000001", "task": "Ticket Summary",
                "namespace": "prod", "attempt": 2, "verdict": "fail",
                "instructions": "Summarise ticket 42 for <EMAIL_ADDRESS>.",
                "inputs": {"ticket": 42}}]
    with serve_in_thread(scripted_model.build_app(SCRIPT)) as model, \
            serve_in_thread(fault_tools.build_app()) as tools:
        (name, doc), = cases(failing, _template(model, tools), "quality")[0]
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        run = LocalRun(path, tmp_path / "state")
        run.start()
        assert run.agent is not None
        code = run.agent.wait(60)
        status = run.finish(code)
        seen = httpx_requests(model)
    assert code == 0 and status["phase"] == "Succeeded"
    assert "FINAL: rerun" in (tmp_path / "state" / "result.json").read_text()
    # The case's own task, not the template's, is what the model was asked.
    first = seen[0]["messages"]
    assert any("Summarise ticket 42 for <EMAIL_ADDRESS>." in str(m.get("content")) and
               '"ticket": 42' in str(m.get("content")) for m in first)
    assert not any("replaced by each case" in str(m.get("content")) for m in first)


def httpx_requests(model: str) -> list[dict[str, Any]]:
    """The chat request bodies the scripted model received, in order."""
    got: list[dict[str, Any]] = httpx.get(model + "/_scripted/requests", timeout=10).json()
    return [r["body"] for r in got if isinstance(r.get("body"), dict) and "messages" in r["body"]]
