"""Every charge in the ledger is on a ``chat`` span: the sum of their ``tether.cost_usd`` over the
trace in ``spans.jsonl`` is the task's ``spentUSD``, whatever cut its model calls short — a call
in flight at a kill (charged its hold by the next attempt, as an orphan), one cut off by a stop
past the grace period, one killed in its retry after an attempt lost and charged."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._raw_upstream import raw_upstream
from .conftest import upstream_requests
from .proc import Sidecar, task_doc

CHAT = "/v1/chat/completions"
PRICING = {"inputPerMTok": "0", "outputPerMTok": "10000.00"}  # max_tokens 10 holds 0.10 USD
HOLD = Decimal("0.10")


@pytest.fixture
def script() -> dict[str, Any]:
    """A request saying "quick" is answered at once, any other slowly enough to be cut off."""
    return {"model": "gpt-4o", "after_last": "repeat_last", "turns": [
        {"content": "slow", "delay": 30.0, "usage": {"input_tokens": 10, "output_tokens": 5}}],
        "rules": [{"contains": "quick", "content": "quick",
                   "usage": {"input_tokens": 10, "output_tokens": 5}}]}


def post_in_background(sc: Sidecar, text: str) -> threading.Thread:
    body = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": text}]}

    def post() -> None:
        # Cut off with the sidecar: what the test looks at is the spend and the spans.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(sc.url + CHAT, json=body, timeout=60)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def wait_for(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 15
    while not ready():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def chat_costs(sc: Sidecar) -> Decimal:
    return sum((Decimal(str(s["attributes"].get("tether.cost_usd", 0))) for s in sc.spans()
                if s["name"].startswith("chat ")), Decimal(0))


@pytest.fixture
def attempts(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(model_url: str, *args: str) -> Sidecar:
        doc = task_doc(model_url)
        doc["spec"]["model"]["pricing"] = PRICING
        sc = Sidecar(tmp_path, doc, "--attempt", str(len(started) + 1), *args)
        started.append(sc)
        return sc.start()

    yield start
    for sc in started:
        sc.stop()


def test_calls_killed_and_cut_off_are_on_spans_that_add_up_to_the_spend(
        attempts: Callable[..., Sidecar], model_server: str) -> None:
    first = attempts(model_server)
    httpx.post(first.url + CHAT, json={"model": "gpt-4o", "max_tokens": 10, "messages": [
        {"role": "user", "content": "quick"}]}, timeout=30).raise_for_status()
    post_in_background(first, "killed")
    wait_for("the second call reached the model", lambda: len(upstream_requests(model_server))
             == 2)
    first.kill()  # SIGKILL: the call's span is never written; the next attempt charges it

    second = attempts(model_server, "--grace-seconds", "0.2")
    (orphan,) = [s for s in second.spans() if s["attributes"].get("tether.outcome") == "orphan"]
    assert orphan["attributes"]["tether.cost_usd"] == float(HOLD)
    thread = post_in_background(second, "cut off")
    wait_for("the third call reached the model", lambda: len(upstream_requests(model_server))
             == 3)
    assert second.stop() == 0  # past the grace period: cancelled, charged its hold
    thread.join(10)

    spent = Decimal(attempts(model_server).status()["spentUSD"])
    assert spent == Decimal("0.05") + 2 * HOLD  # 5 output tokens, then two holds
    assert chat_costs(second) == spent


def test_a_call_killed_in_its_retry_carries_the_lost_attempt_on_its_span(
        attempts: Callable[..., Sidecar]) -> None:
    with raw_upstream("stall") as up:
        first = attempts(up.url, "--model-timeout-seconds", "0.5")
        post_in_background(first, "stalls")
        # The first attempt timed out (charged its hold) and its retry is out: kill now.
        wait_for("a retry after a lost attempt", lambda: (first.state_dir / "journal.jsonl")
                 .read_text().count('"t":"begin"') == 2)
        first.kill()
        spent = Decimal(attempts(up.url).status()["spentUSD"])
    assert spent == 2 * HOLD  # the lost attempt, and the retry's hold charged as an orphan
    assert chat_costs(first) == spent
