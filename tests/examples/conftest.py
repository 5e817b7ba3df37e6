"""Fixtures: the test doubles served for real on 127.0.0.1, one fresh server per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether_examples import fault_tools, scripted_model
from tether_examples._script import load_script
from tether_examples._serve import serve_in_thread

REFERENCE_SCRIPT = Path(__file__).parents[2] / "examples" / "scripts" / "reference.yaml"


@pytest.fixture
def scripted_url() -> Iterator[str]:
    """Base URL of a scripted model playing examples/scripts/reference.yaml."""
    with serve_in_thread(scripted_model.build_app(load_script(REFERENCE_SCRIPT))) as url:
        yield url


@pytest.fixture
def fault_url() -> Iterator[str]:
    """Base URL of a fresh fault-injecting tool server."""
    with serve_in_thread(fault_tools.build_app()) as url:
        yield url


def _conversation(turn: int, last: str | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Investigate the outage."}]
    for i in range(turn):
        messages.append({"role": "assistant", "content": f"step {i}"})
        messages.append({"role": "user", "content": "ok"})
    if last is not None:
        messages[-1]["content"] = last
    return messages


@pytest.fixture
def conversation() -> Callable[..., list[dict[str, Any]]]:
    """`conversation(turn, last=...)`: messages with `turn` assistant messages, user last.

    The same for both wire formats: plain string contents are valid in each.
    """
    return _conversation
