"""The charge-the-hold rule through the real sidecar: every attempt of a model call that may
have reached the provider and then failed — a stall past the timeout, a reset, a response or
stream cut off, an agent gone mid-stream — is charged what was held for it, and a retry holds
anew (which the hard limit may refuse: then it is not sent); $0 only when it never left the pod."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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


def assert_charged(sc: Sidecar, amount: Decimal, retried: int = 0) -> None:
    """Spent ``amount`` with no hold left, the journal's aborts add up to it (a restart counts
    it the same), and ``retried`` of them are attempts lost and retried, each charged a hold."""
    status = sc.status()
    assert Decimal(status["spentUSD"]) == amount
    assert status["reservedUSD"] == "0.000000"
    aborts = [r for r in journal(sc) if r["t"] == "abort"]
    assert sum(Decimal(r.get("usd", "0")) for r in aborts) == amount
    assert [Decimal(r["usd"]) for r in aborts if r.get("retried")] == [HOLD] * retried


@pytest.mark.parametrize("upstream", ["stall", "reset", "half_response"], indirect=True)
def test_a_plain_call_lost_after_sending_is_charged_a_hold_per_attempt(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    sc = sidecar(task(upstream.url), *timeout_for(upstream))
    r = httpx.post(sc.url + CHAT, json=BODY, timeout=30)
    assert r.status_code == 502 and r.json()["error"]["type"] == "retryable_exhausted"
    assert upstream.requests == 3  # maxAttempts 3: every attempt reached the provider
    assert_charged(sc, 3 * HOLD, retried=2)  # the provider may have billed all three
    assert sc.status()["phase"] == "Running"


@pytest.mark.parametrize(("upstream", "lost"), [("reset_then_ok", 1), ("reset_reset_ok", 2)],
                         indirect=["upstream"])
def test_a_success_after_lost_attempts_is_charged_their_holds_and_its_usage(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream, lost: int) -> None:
    sc = sidecar(task(upstream.url))
    r = httpx.post(sc.url + CHAT, json=BODY, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    assert upstream.requests == lost + 1
    assert Decimal(r.headers["x-tether-spent-usd"]) == lost * HOLD + Decimal("0.03")
    status = sc.status()  # each reset attempt may have been billed, then 0.03 reported
    assert Decimal(status["spentUSD"]) == lost * HOLD + Decimal("0.03")
    assert status["reservedUSD"] == "0.000000"
    records = journal(sc)
    assert [Decimal(r["usd"]) for r in records if r["t"] == "end"] == [Decimal("0.03")]
    assert [Decimal(r["usd"]) for r in records if r.get("retried")] == [HOLD] * lost
    assert len([r for r in records if r["t"] == "begin"]) == lost + 1  # one per hold


@pytest.mark.parametrize("upstream", ["reset_reset_ok"], indirect=True)
def test_a_stream_retried_before_its_first_byte_is_charged_the_same(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    sc = sidecar(task(upstream.url))
    with httpx.stream("POST", sc.url + CHAT, json={**BODY, "stream": True}, timeout=30) as r:
        assert r.status_code == 200
        assert b"[DONE]" in r.read()
    assert upstream.requests == 3
    status = sc.status()  # two resets held and lost, then one output token reported
    assert Decimal(status["spentUSD"]) == 2 * HOLD + Decimal("0.01")
    assert status["reservedUSD"] == "0.000000"


@pytest.mark.parametrize("upstream", ["reset_then_ok"], indirect=True)
def test_a_retry_the_hard_limit_has_no_room_for_is_not_sent(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    doc = task(upstream.url)
    doc["spec"]["costEnvelope"] = {"softLimitUSD": "0.05", "hardLimitUSD": "0.15"}
    sc = sidecar(doc)
    r = httpx.post(sc.url + CHAT, json=BODY, timeout=30)
    # The reset attempt is charged 0.10; a second hold of 0.10 would pass 0.15.
    assert r.status_code == 402 and r.json()["error"]["type"] == "budget_exceeded"
    assert upstream.requests == 1  # the retry was never sent
    assert_charged(sc, HOLD, retried=1)
    assert sc.status()["phase"] == "BudgetExceeded"
    sc.stop()
    again = Sidecar(sc.workdir, doc).start()  # the same state dir, as a pod's PVC
    try:
        assert Decimal(again.status()["spentUSD"]) == HOLD  # recovered from the journal
    finally:
        again.stop()


@pytest.mark.parametrize("upstream", ["broken_stream", "stalled_stream", "ended_stream"],
                         indirect=True)
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


@pytest.mark.parametrize("upstream", ["held_then_reset"], indirect=True)
def test_a_retry_crowded_out_by_holds_in_flight_is_refused_for_now_and_not_sent(
        sidecar: Callable[..., Sidecar], upstream: RawUpstream) -> None:
    doc = task(upstream.url)
    doc["spec"]["costEnvelope"] = {"softLimitUSD": "0.05", "hardLimitUSD": "0.25"}
    sc = sidecar(doc, "--hold-wait-seconds", "0.2")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, sc.url + CHAT, json=BODY, timeout=30)
        assert upstream.arrived.wait(10)  # the first call holds 0.10 at the provider
        r = httpx.post(sc.url + CHAT, json={**BODY, "temperature": 0.5}, timeout=30)
        # Reset: 0.10 charged; 0.10 spent + 0.10 held + a new 0.10 would pass 0.25.
        assert r.status_code == 429 and r.json()["error"]["type"] == "budget_contended"
        assert upstream.requests == 2  # the retry was never sent
        upstream.release.set()
        assert first.result().status_code == 200
    assert [Decimal(r["usd"]) for r in journal(sc) if r.get("retried")] == [HOLD]
    status = sc.status()
    assert (Decimal(status["spentUSD"]), status["reservedUSD"]) == (HOLD + Decimal("0.03"),
                                                                   "0.000000")
    assert status["phase"] == "Running"  # contention never trips the breaker
