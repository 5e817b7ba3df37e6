"""The evaluator killed (SIGKILL) at random points while it judges, and started again: no record
acknowledged is lost, no judgement is applied twice, and the judge is called again only for a
call that was in flight at a kill (the scripted judge counts what it received)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

from tether_eval.detect import Cusum
from tether_eval.store import Store
from tether_examples._serve import serve_in_thread
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record

KILLS = 4
PER_ROUND = 12
CONCURRENCY = 4
SAMPLES = 3


def start(tmp_path: Path, db_url: str, cfg: dict[str, Any]) -> tuple[subprocess.Popen[str], str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "TETHER_EVAL_CONFIG": str(path), "TETHER_EVAL_DATABASE": db_url,
           "TETHER_EVAL_HOST": "127.0.0.1", "TETHER_EVAL_PORT": "0",
           "TETHER_EVAL_INSTANCE": "eval-0", "TETHER_EVAL_SECRETS_DIR": str(tmp_path),
           "TETHER_EVAL_CONCURRENCY": str(CONCURRENCY), "TETHER_EVAL_IDLE_SECONDS": "0.2"}
    with (tmp_path / "evaluator.log").open("a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tether_eval"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until bound (or EOF if it died)
    assert line.startswith("listening on "), f"the evaluator did not start: {line!r}"
    return proc, line.split()[-1]


def post_until_acked(url: str, doc: dict[str, Any]) -> int:
    with httpx.Client(timeout=10) as http:
        r = http.post(url + "/v1/records", json=doc)
    assert r.status_code in (200, 201), r.text
    return r.status_code


def stop(proc: subprocess.Popen[str], kill: bool) -> None:
    if kill:
        proc.kill()
    else:
        proc.terminate()
    proc.wait(10)
    assert proc.stdout is not None
    proc.stdout.close()


def wait_drained(url: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            r = http.get(url + "/readyz")
            if r.status_code == 200 and r.json()["pending"] == 0:
                return
            time.sleep(0.1)  # another process: no event to wait on
    tail = log.read_text()[-3000:]
    raise AssertionError(f"judging did not finish within {timeout} s; the log ends:\n{tail}")


def test_killed_at_random_points_it_loses_nothing_and_judges_nothing_twice(
        tmp_path: Path, db_url: str) -> None:
    rng = random.Random(20261130)
    # A judge taking 0.1 s an answer: each round's judging outlasts the kill point after it.
    judge = ScriptedJudge(JudgeScript(seed=5, delay=0.1))
    acked: list[str] = []
    with serve_in_thread(judge.app()) as jurl:
        cfg = config_doc(jurl, samples=SAMPLES)
        for round_ in range(KILLS):
            proc, url = start(tmp_path, db_url, cfg)
            try:
                if acked:  # the sidecar's outbox re-delivers: already stored, 200
                    assert post_until_acked(url, record(acked[-1])) == 200
                for i in range(PER_ROUND):
                    uid = f"r{round_}-{i:02d}"
                    assert post_until_acked(url, record(uid)) == 201
                    acked.append(uid)
                time.sleep(rng.uniform(0.05, 0.5))  # the kill point, seeded
            finally:
                stop(proc, kill=True)
        proc, url = start(tmp_path, db_url, cfg)
        try:
            wait_drained(url, tmp_path / "evaluator.log")
        finally:
            stop(proc, kill=False)
        calls = Counter(c["call"] for c in judge.calls)
    # The seeded kill points land mid-judging: a restart took judgements over from a kill.
    assert "Took back" in (tmp_path / "evaluator.log").read_text()
    sends, verdicts, detector = asyncio.run(_read(db_url))
    assert sorted(v[0] for v in verdicts) == sorted(acked)  # every acked record judged once
    assert all(v[2] == "pass" for v in verdicts)
    assert set(calls) == {"/".join(map(str, k)) for k in sends}
    for key, n in sends.items():
        assert 1 <= calls["/".join(map(str, key))] <= n  # never more calls than journalled
    resent = sum(n - 1 for n in sends.values())
    assert resent <= KILLS * CONCURRENCY, "more calls re-sent than were in flight at kills"
    assert sum(calls.values()) == len(acked) * SAMPLES + resent - _lost(sends, calls)
    assert detector is not None and Cusum.from_dict(detector).samples == len(acked)


def _lost(sends: dict[tuple[str, int, str, int], int], calls: Counter[str]) -> int:
    """Sends journalled whose request never reached the judge (killed between the two)."""
    return sum(n - calls["/".join(map(str, k))] for k, n in sends.items())


async def _read(db_url: str) -> tuple[dict[tuple[str, int, str, int], int],
                                       list[tuple[str, int, str, float | None, str]],
                                       dict[str, Any] | None]:
    store = await Store.open(db_url)
    try:
        state, _ = await store.detector("p1")
        return (await store.sends(), await store.verdicts("p1"),
                json.loads(state) if state else None)
    finally:
        await store.close()
