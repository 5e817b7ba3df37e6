"""Durability through the real sidecar process: checkpoints, a restart that replays from the
journal, calls in flight at a kill, a graceful stop, and storage that fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether_agent import Harness, HarnessError

from .conftest import upstream_requests
from .proc import Sidecar, task_doc

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def rig(tmp_path: Path, model_server: str, tool_server: str) -> Iterator[
        Callable[..., Sidecar]]:
    """Start (and restart) sidecars that share one state dir, as pods share a PVC."""
    running: list[Sidecar] = []
    tools = [{"name": "effect", "url": tool_server + "/side-effect", "sideEffects": True,
              "idempotencyHeader": "Idempotency-Key"},
             {"name": "raw-effect", "url": tool_server + "/side-effect", "sideEffects": True}]

    def start(*args: str, **spec: Any) -> Sidecar:
        sc = Sidecar(tmp_path, task_doc(model_server, tools=tools, **spec), *args)
        running.append(sc)
        return sc.start()

    yield start
    for sc in running:
        sc.stop()


def test_checkpoint_round_trip(rig: Callable[..., Sidecar]) -> None:
    sc = rig()
    h = Harness(sc.url)
    assert h.resume() is None
    h.checkpoint(3, {"messages": ["a", "b"]})
    got = h.resume()
    assert got is not None and (got.step, got.state) == (3, {"messages": ["a", "b"]})
    assert sc.status()["lastCheckpoint"]["step"] == 3 and sc.status()["step"] == 3
    assert sc.metric("tether_checkpoint_seconds_count") == 1
    span = sc.wait_span(lambda s: s["name"] == "step 3")
    assert span["attributes"]["tether.checkpoint.sha256"] == got.sha256


def test_restart_answers_completed_calls_from_the_journal(
        rig: Callable[..., Sidecar], model_server: str, tool_server: str) -> None:
    sc = rig()
    first = httpx.post(sc.url + CHAT, json=BODY, timeout=30).json()
    effect = httpx.post(sc.url + "/tools/effect", json={"n": 1}, timeout=30).json()
    spent = sc.status()["spentUSD"]
    sc.kill()

    again = rig()  # a new pod on the same volume; the agent starts over from no checkpoint
    assert Harness(again.url).resume() is None
    r = httpx.post(again.url + CHAT, json=BODY, timeout=30)
    assert r.json() == first and r.headers["x-tether-replayed"] == "true"
    t = httpx.post(again.url + "/tools/effect", json={"n": 1}, timeout=30)
    assert t.json() == effect and t.headers["x-tether-replayed"] == "true"
    assert len(upstream_requests(model_server)) == 1  # not sent again
    assert httpx.get(tool_server + "/_hits").json()["side_effects"] == [effect["idempotency_key"]]
    status = again.status()
    assert status["spentUSD"] == spent and status["replayed"] == 2  # not charged again
    assert again.wait_span(lambda s: s["attributes"].get("tether.replayed") is True)
    # A call beyond what the journal holds goes live.
    more = {**BODY, "messages": [*BODY["messages"], {"role": "assistant", "content": "x"}]}
    assert httpx.post(again.url + CHAT, json=more, timeout=30).headers.get(
        "x-tether-replayed") is None
    assert len(upstream_requests(model_server)) == 2


@pytest.fixture
def script() -> dict[str, Any]:
    return {"model": "gpt-4o", "after_last": "repeat_last", "turns": [
        {"content": "slow answer", "delay": 3.0, "usage": {"input_tokens": 10,
                                                          "output_tokens": 5}}]}


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def wait_in_flight(sc: Sidecar, model_url: str) -> None:
    import time
    deadline = time.monotonic() + 10
    while not upstream_requests(model_url) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream_requests(model_url), "the call never reached the model"


def post_quietly() -> Callable[[str], Any]:
    def call(url: str) -> Any:
        try:
            return httpx.post(url + CHAT, json=BODY, timeout=30)
        except httpx.HTTPError as exc:
            return exc
    return call


def test_a_call_in_flight_at_a_kill_is_charged_once(rig: Callable[..., Sidecar],
                                                    model_server: str) -> None:
    sc = rig()
    thread, _ = in_background(lambda: post_quietly()(sc.url))
    wait_in_flight(sc, model_server)
    sc.kill()
    thread.join(10)
    again = rig()
    status = again.status()
    journal = [json.loads(x) for x in (again.state_dir / "journal.jsonl").read_text()
               .splitlines()]
    (begin,) = [r for r in journal if r["t"] == "begin"]
    (orphan,) = [r for r in journal if r["t"] == "orphan"]
    hold = Decimal(begin["hold"])
    assert orphan["id"] == begin["id"] and Decimal(orphan["usd"]) == hold
    assert Decimal(status["spentUSD"]) == hold and status["orphans"] == 1
    again.stop()
    assert Decimal(rig().status()["spentUSD"]) == hold  # and only once, on every later start


def test_sigterm_lets_the_call_in_flight_finish(rig: Callable[..., Sidecar],
                                                model_server: str) -> None:
    sc = rig("--grace-seconds", "10")
    thread, out = in_background(lambda: post_quietly()(sc.url))
    wait_in_flight(sc, model_server)
    assert sc.proc is not None
    sc.proc.send_signal(signal.SIGTERM)
    thread.join(20)
    assert sc.proc.wait(20) == 0
    assert isinstance(out[0], httpx.Response) and out[0].json()["choices"][0]["message"][
        "content"] == "slow answer"
    summary = json.loads((sc.workdir / "termination").read_text())
    assert summary["abortedCalls"] == 0 and summary["llmCalls"] == 1
    assert Decimal(summary["spentUSD"]) > 0
    assert Decimal(rig().status()["spentUSD"]) == Decimal(summary["spentUSD"])  # resumes


def test_sigterm_past_the_grace_period_records_the_abort(rig: Callable[..., Sidecar],
                                                         model_server: str) -> None:
    sc = rig("--grace-seconds", "0.2")
    thread, _ = in_background(lambda: post_quietly()(sc.url))
    wait_in_flight(sc, model_server)
    assert sc.proc is not None
    sc.proc.send_signal(signal.SIGTERM)
    assert sc.proc.wait(20) == 0
    thread.join(20)
    summary = json.loads((sc.workdir / "termination").read_text())
    assert summary["abortedCalls"] == 1
    journal = (sc.state_dir / "journal.jsonl").read_text()
    assert '"t":"abort"' in journal and '"cancelled while in flight"' in journal
    spent = Decimal(summary["spentUSD"])
    assert spent > 0  # the hold is charged: the provider may bill a call we lost
    again = rig()
    assert Decimal(again.status()["spentUSD"]) == spent and again.status()["orphans"] == 0


def test_checkpoint_bad_input(rig: Callable[..., Sidecar]) -> None:
    sc = rig(checkpoint={"maxBytes": 1024})
    r = httpx.put(sc.url + "/checkpoint", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["reason"]
    r = httpx.put(sc.url + "/checkpoint", json={"state": {}, "step": -1})
    assert r.status_code == 400 and "step" in r.json()["error"]["reason"]
    r = httpx.put(sc.url + "/checkpoint", json={"step": 1, "state": "x" * 2000})
    assert r.status_code == 413 and r.json()["error"]["class"] == "checkpoint_too_large"
    with pytest.raises(HarnessError) as info:
        Harness(sc.url).checkpoint(1, "x" * 2000)
    assert info.value.error_class == "checkpoint_too_large"
    assert sc.status()["lastCheckpoint"] is None


def test_damaged_checkpoints_are_not_a_fresh_start(rig: Callable[..., Sidecar]) -> None:
    sc = rig()
    Harness(sc.url).checkpoint(1, {"a": 1})
    Harness(sc.url).checkpoint(2, {"a": 2})
    for path in (sc.state_dir / "checkpoints").iterdir():
        path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(HarnessError) as info:
        Harness(sc.url).resume()
    assert info.value.error_class == "checkpoint_corrupt"
    assert sc.metric("tether_checkpoint_corrupt_total") == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_full_volume_is_a_507_and_the_agent_knows(tmp_path: Path, model_server: str) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        sc = Sidecar(tmp_path / "w", task_doc(model_server))
        sc.state_dir = mnt
        cmd = sc.command()
        cmd[cmd.index("--state-dir") + 1] = str(mnt)
        sc.command = lambda: cmd  # type: ignore[method-assign]
        sc.start()
        try:
            h = Harness(sc.url)
            h.checkpoint(1, {"small": True})
            with pytest.raises(HarnessError) as info:
                h.checkpoint(2, {"big": "y" * 400_000})
            assert info.value.status == 507
            assert info.value.error_class == "checkpoint_write_failed"
            assert "No space left" in info.value.reason
            assert h.resume().step == 1  # type: ignore[union-attr]
        finally:
            sc.stop()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_unwritable_state_dir_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    sc = Sidecar(tmp_path, task_doc("http://127.0.0.1:9"))
    done = subprocess.run(sc.command(), capture_output=True, text=True, timeout=60, env=sc.env)
    assert done.returncode == 2 and "--state-dir" in done.stderr and "not writable" in done.stderr


def test_replay_matches_the_same_request_in_another_key_order_and_nothing_else(
        rig: Callable[..., Sidecar], model_server: str) -> None:
    """A restarted agent's SDK may write the same request with its keys in another order (and
    other whitespace): still the same call. Any value that differs is a new call."""
    sc = rig()
    first = httpx.post(sc.url + CHAT, json=BODY, timeout=30).json()
    sc.kill()
    again = rig()
    reordered = json.dumps({"messages": BODY["messages"], "max_tokens": 100, "model": "gpt-4o"},
                           indent=2).encode()
    r = httpx.post(again.url + CHAT, content=reordered, timeout=30,
                   headers={"content-type": "application/json"})
    assert r.json() == first and r.headers["x-tether-replayed"] == "true"
    other = {"model": "gpt-4o", "max_tokens": 100, "messages": [{"content": "hi", "role": "user",
                                                                  "name": "b"}]}
    assert httpx.post(again.url + CHAT, json=other, timeout=30).headers.get(
        "x-tether-replayed") is None
    assert len(upstream_requests(model_server)) == 2  # the first call and the different one
