from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread

from .proc import Sidecar

REFERENCE = Path(__file__).parents[2] / "examples" / "scripts" / "reference.yaml"


@pytest.fixture
def script() -> dict[str, Any]:
    """A plain script: three answers, a tool call in the middle; override per test."""
    return {
        "model": "gpt-4o",
        "turns": [
            {"content": "Hello there.", "usage": {"input_tokens": 1200, "output_tokens": 35}},
            {"content": "", "tool_calls": [{"id": "call_1", "name": "search",
                                            "arguments": {"q": "tether"}}],
             "usage": {"input_tokens": 1500, "output_tokens": 20}},
            {"content": "Done.", "usage": {"input_tokens": 1800, "output_tokens": 5}},
        ],
        "rules": [{"contains": "Summarize the conversation", "content": "Summary: all good.",
                   "usage": {"input_tokens": 300, "output_tokens": 12}}],
        "after_last": "repeat_last",
    }


@pytest.fixture
def model_server(script: dict[str, Any]) -> Iterator[str]:
    with serve_in_thread(scripted_model.build_app(script)) as url:
        yield url


@pytest.fixture
def tool_server() -> Iterator[str]:
    with serve_in_thread(fault_tools.build_app()) as url:
        yield url


def upstream_requests(model_url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(model_url + "/_scripted/requests", timeout=5).json()
    return got


@pytest.fixture
def sidecar(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(task: dict[str, Any], *args: str, **kw: Any) -> Sidecar:
        sc = Sidecar(tmp_path / f"sc{len(started)}", task, *args, **kw)
        started.append(sc)
        return sc.start()

    yield start
    for sc in started:
        sc.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for sc in started:
            print(f"--- sidecar log {sc.workdir} ---\n{sc.log()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
