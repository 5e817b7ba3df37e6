"""Bad input gets a clear 4xx (or a start-up error) and changes nothing."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import upstream_requests
from .proc import Sidecar, task_doc

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"model": "gpt-4o", "messages": [', "not valid JSON"),
    (b'["a list"]', "must be a JSON object"),
    (b'{"model": "gpt-4o"}', "messages: a non-empty list is required"),
    (b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "x"}]}',
     "this task may use 'gpt-4o'"),
])
def test_bad_model_request_is_a_400_and_nothing_moves(
        sidecar: Callable[..., Sidecar], model_server: str, body: bytes, reason: str) -> None:
    sc = sidecar(task_doc(model_server))
    r = httpx.post(sc.url + CHAT, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "bad_request"
    assert reason in r.json()["error"]["message"]
    status = sc.status()
    assert (status["llmCalls"], status["spentUSD"], status["reservedUSD"]) == \
        (0, "0.000000", "0.000000")
    assert upstream_requests(model_server) == []


def test_body_over_the_limit_is_a_413(sidecar: Callable[..., Sidecar], model_server: str) -> None:
    sc = sidecar(task_doc(model_server, tools=[{"name": "t", "url": "http://127.0.0.1:9/"}]),
                 "--max-body-bytes", "2048")
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 4096}]}
    for path in (CHAT, "/tools/t"):
        r = httpx.post(sc.url + path, json=big)
        assert r.status_code == 413, path
        assert "2048" in r.text
    assert upstream_requests(model_server) == []
    assert sc.status()["toolCalls"] == 0


def run_sidecar(tmp_path: Path, task: Any, *args: str) -> subprocess.CompletedProcess[str]:
    sc = Sidecar(tmp_path, task if isinstance(task, dict) else {})
    if not isinstance(task, dict):
        sc.task_path.write_text(task)
    return subprocess.run(sc.command() + list(args), capture_output=True, text=True,
                          timeout=60, env=sc.env)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["spec"]["costEnvelope"].update(softLimitUSD="5.00"),
     "spec.costEnvelope: softLimitUSD (5.00) must not exceed hardLimitUSD (2.00)"),
    (lambda d: d["spec"]["retryPolicy"]["calls"].update(retryOn=["sometimes"]),
     "spec.retryPolicy.calls.retryOn: unknown retry class 'sometimes'"),
    (lambda d: d["spec"]["model"].update(credentialsSecretRef={"name": "nope", "key": "k"}),
     "spec.model.credentialsSecretRef: cannot read"),
    (lambda d: d["spec"]["model"].update(name="no-such-model"),
     "spec.model.name: genai-prices has no price"),
])
def test_invalid_task_stops_start_up_with_the_field_named(
        tmp_path: Path, mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    doc = task_doc("http://127.0.0.1:9")
    mutate(doc)
    done = run_sidecar(tmp_path, doc)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert not (tmp_path / "state" / "spans.jsonl").exists()  # nothing half-applied


def test_not_yaml_is_a_start_up_error(tmp_path: Path) -> None:
    done = run_sidecar(tmp_path, "spec: [unclosed")
    assert done.returncode == 2 and "not valid YAML" in done.stderr


def test_taken_port_is_a_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        sc = Sidecar(tmp_path, task_doc("http://127.0.0.1:9"))
        cmd = sc.command()
        cmd[cmd.index("--port") + 1] = str(port)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=sc.env)
    assert done.returncode == 2 and "cannot listen" in done.stderr
