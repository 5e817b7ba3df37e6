"""The charge-the-hold rule through the real sidecar: a model call that may have reached the
provider and then failed — a stall past the timeout, a reset, a response or stream cut off, an
agent gone mid-stream — is charged what was held for it; $0 only when it never left the pod."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from ._raw_upstream import RawUpstream, raw_upstream
from .proc import Sidecar, task_doc

# Input is free and an output token costs a cent: max_tokens 10 holds exactly 0.10 USD.
PRICING = {"inputPerMTok": "0", "outputPerMTok": "10000.00"}
HOLD = Decimal("0.10")
BODY = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
CHAT = "/v1/chat/completions"


def task(model_url: str) -> dict[str, Any]:
    doc = task_doc(model_url)
    doc["spec"]["model"]["pricing"] = PRICING
    return doc


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[RawUpstream]:
    with raw_upstream(request.param) as up:
        yield up


def timeout_for(upstream: RawUpstream) -> tuple[str, ...]:
    """A stall is a timeout: a short one (the default is 600 s)."""
    return ("--model-timeout-seconds", "0.5") if "stall" in upstream.fault else ()


def journal(sc: Sidecar) -> list[dict[str, Any]]:
    lines = (sc.state_dir / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_charged(sc: Sidecar, amount: Decimal) -> None:
    status = sc.status()
    assert Decimal(status["spentUSD"]) == amount
    assert status["reservedUSD"] == "0.000000"
    (abort,) = [r for r in journal(sc) if r["t"] == "abort"]
    assert Decimal(abort.get("usd", "0")) == amount  # a restart counts it the same


@pytest.mark.parametrize("upstream", ["stall", "reset", "half_response"], indirect=True)
def test_a_plain_call_lost_after_sending_is_charged_its_hold(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    sc = sidecar(task(upstream.url), *timeout_for(upstream))
    r = httpx.post(sc.url + CHAT, json=BODY, timeout=30)
    assert r.status_code == 502 and r.json()["error"]["type"] == "retryable_exhausted"
    assert upstream.requests == 3  # maxAttempts 3: every attempt reached the provider
    assert_charged(sc, HOLD)
    assert sc.status()["phase"] == "Running"


@pytest.mark.parametrize("upstream", ["reset_then_ok"], indirect=True)
def test_a_success_after_a_lost_attempt_is_charged_at_least_the_hold(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    sc = sidecar(task(upstream.url))
    r = httpx.post(sc.url + CHAT, json=BODY, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    assert upstream.requests == 2
    status = sc.status()  # 0.03 reported, but the reset attempt may have been billed too
    assert (Decimal(status["spentUSD"]), status["reservedUSD"]) == (HOLD, "0.000000")
    (end,) = [r for r in journal(sc) if r["t"] == "end"]
    assert Decimal(end["usd"]) == HOLD


@pytest.mark.parametrize("upstream", ["broken_stream", "stalled_stream"], indirect=True)
def test_a_stream_broken_after_it_began_is_charged_its_hold(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    sc = sidecar(task(upstream.url), *timeout_for(upstream))
    with httpx.stream("POST", sc.url + CHAT, json={**BODY, "stream": True}, timeout=30) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()  # the agent sees the stream end early, never a clean end
    assert upstream.requests == 1
    assert_charged(sc, HOLD)


@pytest.mark.parametrize("upstream", ["stream_after_release"], indirect=True)
def test_an_agent_gone_mid_stream_is_charged_the_hold(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    sc = sidecar(task(upstream.url))
    with httpx.stream("POST", sc.url + CHAT, json={**BODY, "stream": True}, timeout=30) as r:
        next(r.iter_raw())  # the first chunk arrived; then the agent hangs up
    upstream.release.set()
    sc.wait_span(lambda s: s["name"] == "chat gpt-4o")
    assert_charged(sc, HOLD)


def test_a_call_that_never_left_costs_nothing(sidecar: Callable[..., Sidecar]) -> None:
    with socket.socket() as free:  # a port nobody listens on: connection refused
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    sc = sidecar(task(f"http://127.0.0.1:{port}"))
    r = httpx.post(sc.url + CHAT, json=BODY, timeout=30)
    assert r.status_code == 502
    assert_charged(sc, Decimal(0))
