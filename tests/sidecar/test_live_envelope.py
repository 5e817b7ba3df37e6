"""Live edits of the cost envelope through the real sidecar: the task file is swapped the way
kubelet updates a mounted ConfigMap (a new directory, then the ``..data`` symlink renamed onto
it), and /status shows what is enforced (issue #9, contract 2)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .proc import Sidecar, task_doc

# An output token costs a cent and input is free: max_tokens 10 holds 0.10, a call costs 0.07.
PRICING = {"inputPerMTok": "0", "outputPerMTok": "10000.00"}
BODY = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def script() -> dict[str, Any]:
    return {"model": "gpt-4o", "turns": [{"content": "ok",
                                          "usage": {"input_tokens": 5, "output_tokens": 7}}]}


class Mounted:
    """A task file laid out as kubelet mounts a ConfigMap key."""

    def __init__(self, sc: Sidecar) -> None:
        self.root, self.versions = sc.task_path.parent / "cm", 0
        self.root.mkdir()
        self.write(sc.task_path.read_text())
        sc.task_path.unlink()
        sc.task_path.symlink_to(self.root / "agenttask.yaml")
        (self.root / "agenttask.yaml").symlink_to("..data/agenttask.yaml")

    def write(self, text: str) -> None:
        self.versions += 1
        version = self.root / f"..v{self.versions}"
        version.mkdir()
        (version / "agenttask.yaml").write_text(text)
        (self.root / "..data_tmp").symlink_to(version.name)
        os.rename(self.root / "..data_tmp", self.root / "..data")  # atomic, as kubelet does


def task(model_url: str, generation: int, **envelope: Any) -> dict[str, Any]:
    doc = task_doc(model_url, costEnvelope=envelope)
    doc["metadata"]["generation"] = generation
    doc["spec"]["model"]["pricing"] = PRICING
    return doc


@pytest.fixture
def live(tmp_path: Path, model_server: str) -> Iterator[tuple[Sidecar, Mounted]]:
    sc = Sidecar(tmp_path, task(model_server, 1, hardLimitUSD="0.20", softLimitUSD="0.15"),
                 "--task-poll-seconds", "0.1")
    mounted = Mounted(sc)
    sc.start()
    yield sc, mounted
    sc.stop()


def until(sc: Sidecar, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = sc.status()
        if pred(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"/status never matched; last: {status}")


def call(sc: Sidecar) -> httpx.Response:
    return httpx.post(sc.url + "/v1/chat/completions", json=BODY, timeout=30)


def test_a_raised_limit_applies_live_and_a_lowered_one_stops_the_task(
        live: tuple[Sidecar, Mounted], model_server: str) -> None:
    sc, mounted = live
    assert (sc.status()["generation"], sc.status()["hardLimitUSD"]) == (1, "0.200000")
    assert call(sc).is_success and call(sc).is_success  # 0.14 spent; a third would need 0.24
    mounted.write(yaml.safe_dump(task(model_server, 2, hardLimitUSD="0.50",
                                      softLimitUSD="0.40")))
    status = until(sc, lambda s: s["generation"] == 2)
    assert (status["hardLimitUSD"], status["softLimitUSD"]) == ("0.500000", "0.400000")
    assert call(sc).is_success  # fits under the raised limit: 0.21 spent
    mounted.write(yaml.safe_dump(task(model_server, 3, hardLimitUSD="0.10")))
    status = until(sc, lambda s: s["generation"] == 3)
    # Below what was spent: stopped at once, before any further call.
    assert (status["phase"], status["hardLimitUSD"], status["softLimitUSD"]) == (
        "BudgetExceeded", "0.100000", None)
    r = call(sc)
    assert r.status_code == 402 and r.json()["error"]["type"] == "budget_exceeded"
    assert sc.stop() == 0
    summary = json.loads((sc.workdir / "termination").read_text())
    assert (summary["generation"], summary["hardLimitUSD"], summary["phase"],
            summary["spentUSD"]) == (3, "0.100000", "BudgetExceeded", "0.210000")


def test_an_invalid_file_is_ignored_and_a_next_attempt_edit_keeps_the_generation(
        live: tuple[Sidecar, Mounted], model_server: str) -> None:
    sc, mounted = live
    mounted.write("spec: [\n")
    status = until(sc, lambda s: s["configError"] is not None)
    assert str(sc.task_path) in status["configError"] and "not valid YAML" in status[
        "configError"]
    assert (status["generation"], status["hardLimitUSD"]) == (1, "0.200000")
    bad = task(model_server, 2, hardLimitUSD="0.10", softLimitUSD="0.15")  # soft over hard
    mounted.write(yaml.safe_dump(bad))
    status = until(sc, lambda s: "softLimitUSD" in (s["configError"] or ""))
    assert (status["generation"], status["hardLimitUSD"]) == (1, "0.200000")
    assert sc.metric("tether_sidecar_config_reload_failures_total") == 2
    assert "not applied, the spec of generation 1 stays enforced" in sc.log()
    # A new tool is for the next attempt: the envelope applies, the generation does not move.
    edited = task(model_server, 3, hardLimitUSD="0.30")
    edited["spec"]["tools"] = [{"name": "search", "url": "http://127.0.0.1:9/search"}]
    mounted.write(yaml.safe_dump(edited))
    status = until(sc, lambda s: s["hardLimitUSD"] == "0.300000")
    assert (status["generation"], status["configError"]) == (1, None)
    r = httpx.post(sc.url + "/tools/search", json={}, timeout=30)
    assert r.status_code == 404  # not applied to this attempt
    mounted.write(yaml.safe_dump(task(model_server, 4, hardLimitUSD="0.30")))
    status = until(sc, lambda s: s["generation"] == 4)  # the tool edit reverted: all enforced
    assert status["hardLimitUSD"] == "0.300000"
