"""The Agents-SDK reference agent end to end under ``tether run``: the real sidecar, the scripted
model playing examples/scripts/agents.yaml (Responses API), the MCP tool server
(tether-mcp-tools, a process) and the agent as a subprocess, as examples/agenttask-agents.yaml
declares them. It answers, the spend is genai-prices' price for the usage the model reported,
and the destructive ``open_ticket`` runs once, also when the agent dies mid-task and resumes.
The MCP server's own behaviour (annotations, the numbered check, control routes) is checked
with the official mcp client at the end.

The answer quotes the numbered status check and the ticket id, so a resume that re-ran a step
it had checkpointed (or opened a second ticket) answers differently, as
test_a_run_that_ignores_its_checkpoint_answers_differently shows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import mcp.types as types
import pytest
import yaml
from genai_prices import Usage, calc_price
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tether_cli.run import LocalRun
from tether_examples import scripted_model
from tether_examples._script import load_script
from tether_examples._serve import serve_in_thread

REPO = Path(__file__).parents[2]
ANSWER = ("Root cause: the payment gateway's TLS certificate expired (renewal was manual). "
          "Now: payments: healthy (check #1). Follow-up: TCK-1.")
TURNS = 5  # four steps of tool calls, then the answer


@pytest.fixture
def model() -> Iterator[str]:
    script = load_script(REPO / "examples" / "scripts" / "agents.yaml")
    with serve_in_thread(scripted_model.build_app(script)) as url:
        yield url


def serve_mcp_tools(*args: str) -> Iterator[str]:
    """The MCP tool server as its console script runs it, on a free loopback port."""
    proc = subprocess.Popen([sys.executable, "-m", "tether_examples.mcp_tools", "--port", "0",
                             *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), f"tether-mcp-tools said {line!r}"
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def mcp_tools() -> Iterator[str]:
    yield from serve_mcp_tools()


@pytest.fixture
def slow_ticket_tools() -> Iterator[str]:
    """open_ticket answers 3 s after the ticket exists: a kill can land in between."""
    yield from serve_mcp_tools("--ticket-delay", "3")


def task_file(tmp_path: Path, model: str, mcp_tools: str, **env: str) -> Path:
    """examples/agenttask-agents.yaml pointed at this test's doubles, prices declared."""
    task = yaml.safe_load((REPO / "examples" / "agenttask-agents.yaml").read_text())
    spec = task["spec"]
    spec["model"]["baseURL"] = model + "/v1"
    spec["tools"][0]["mcp"]["url"] = mcp_tools + "/mcp"
    spec["agent"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def tether_run(task: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether_cli", "run", str(task), "--state-dir", str(state),
         "--secrets-dir", str(REPO / "examples" / "secrets"), "--quiet"],
        capture_output=True, text=True, timeout=180)


def billed(model: str) -> tuple[int, Decimal]:
    """The model's own bill: requests answered and genai-prices' price of their usage."""
    seen = [r for r in httpx.get(model + "/_scripted/requests").json() if r["usage"]]
    price = sum((calc_price(Usage(input_tokens=r["usage"]["input_tokens"],
                                  output_tokens=r["usage"]["output_tokens"]),
                            model_ref="gpt-4o", provider_id="openai").total_price
                 for r in seen), Decimal(0))
    return len(seen), price


def effects(mcp_tools: str) -> dict[str, Any]:
    got: dict[str, Any] = httpx.get(mcp_tools + "/_effects").json()
    return got


def last_checkpoint(state: Path) -> dict[str, Any]:
    newest = sorted((state / "checkpoints").glob("ckpt-*.json"))[-1]
    doc: dict[str, Any] = json.loads(newest.read_bytes().split(b"\n", 1)[1])
    return doc


def test_answers_with_the_tools_results_at_the_models_price(
        tmp_path: Path, model: str, mcp_tools: str) -> None:
    state = tmp_path / "state"
    done = tether_run(task_file(tmp_path, model, mcp_tools), state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == ANSWER
    status = json.loads((state / "status.json").read_text())
    calls, price = billed(model)
    assert (status["phase"], status["step"], calls) == ("Succeeded", TURNS, TURNS)
    assert Decimal(status["spentUSD"]) == price > 0
    assert effects(mcp_tools) == {"tickets": [
        "Automate TLS certificate renewal for the payment gateway"], "calls": {
        "search_incidents": 1, "read_report": 1, "check_status": 1, "open_ticket": 1}}
    ckpt = last_checkpoint(state)
    assert ckpt["state"]["done"] and ckpt["state"]["result"] == ANSWER
    assert json.loads((state / "result.json").read_text())["answer"] == ANSWER  # finish()


@pytest.mark.parametrize("step", [1, 3, 4, 5])  # 5: the answer saved, the task not done
def test_exits_after_a_step_and_resumes_from_its_checkpoint(
        tmp_path: Path, model: str, mcp_tools: str, step: int) -> None:
    task, state = task_file(tmp_path, model, mcp_tools, AGENT_EXIT_AT_STEP=str(step),
                            AGENT_EXIT_CODE="7"), tmp_path / "state"
    first = tether_run(task, state)
    assert first.returncode == 1, first.stderr  # the agent's 7: the run Failed
    assert last_checkpoint(state)["step"] == step, first.stderr
    done = tether_run(task, state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == ANSWER
    calls, price = billed(model)
    assert calls == TURNS  # no turn asked twice: the resumed run went on from the checkpoint
    assert Decimal(json.loads((state / "status.json").read_text())["spentUSD"]) == price
    assert effects(mcp_tools)["tickets"] == [
        "Automate TLS certificate renewal for the payment gateway"]
    assert set(effects(mcp_tools)["calls"].values()) == {1}


def test_sigkilled_while_the_destructive_call_runs_resumes_without_a_second_ticket(
        tmp_path: Path, model: str, slow_ticket_tools: str) -> None:
    """SIGKILL once the ticket exists and before open_ticket answered: the agent never saw the
    result, so the resumed agent calls it again, and the sidecar's journal answers that call
    with the first one's result (TCK-1) instead of opening a second ticket."""
    tools, state = slow_ticket_tools, tmp_path / "state"
    run = LocalRun(task_file(tmp_path, model, tools), state, REPO / "examples" / "secrets")
    run.start()
    assert run.agent is not None
    with httpx.Client() as http:
        while not http.get(tools + "/_effects").json()["tickets"]:
            assert run.agent.poll() is None, "the agent ended before opening its ticket"
            time.sleep(0.05)  # another process's state: polled, gently on a shared machine
    run.agent.send_signal(signal.SIGKILL)
    run.agent.wait(30)
    assert last_checkpoint(state)["step"] == 3  # the ticket's step was not checkpointed
    run.finish(run.agent.returncode)
    done = tether_run(task_file(tmp_path, model, tools), state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == ANSWER
    assert effects(tools)["calls"] == {"search_incidents": 1, "read_report": 1,
                                       "check_status": 1, "open_ticket": 1}


def test_a_run_that_ignores_its_checkpoint_answers_differently(
        tmp_path: Path, model: str, mcp_tools: str) -> None:
    """What the resume tests guard against: redoing checkpointed steps shows in the answer."""
    task = task_file(tmp_path, model, mcp_tools)
    assert tether_run(task, tmp_path / "first").returncode == 0
    again = tether_run(task, tmp_path / "fresh")  # no checkpoint: every step again
    assert "check #2" in again.stdout and ANSWER not in again.stdout


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def test_the_mcp_server_lists_one_destructive_tool_and_records_what_it_did(
        mcp_tools: str) -> None:
    tools = mcp_tools
    async with streamable_http_client(tools + "/mcp") as (read, write), \
            ClientSession(read, write) as s:
        await s.initialize()
        listed = {t.name: t.annotations for t in (await s.list_tools()).tools}
        checks = [text(await s.call_tool("check_status", {"service": "payments"}))
                  for _ in range(2)]
        ticket = text(await s.call_tool("open_ticket", {"title": "Renew"}))
        report = text(await s.call_tool("read_report", {"incident": 1}))
    assert sorted(listed) == ["check_status", "open_ticket", "read_report", "search_incidents"]
    destructive = [n for n, a in listed.items() if a and a.destructive_hint]
    read_only = [n for n, a in listed.items() if a and a.read_only_hint]
    assert destructive == ["open_ticket"] and sorted(read_only) == [
        "check_status", "read_report", "search_incidents"]
    assert checks == ["payments: healthy (check #1)", "payments: healthy (check #2)"]
    assert (ticket, report.startswith("Root cause: the TLS certificate")) == ("TCK-1", True)
    assert httpx.get(tools + "/_effects").json() == {"tickets": ["Renew"], "calls": {
        "check_status": 2, "open_ticket": 1, "read_report": 1}}
    httpx.post(tools + "/_reset").raise_for_status()
    assert httpx.get(tools + "/_effects").json() == {"tickets": [], "calls": {}}
