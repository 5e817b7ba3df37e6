"""Fixtures of the evaluator's tests: both databases, the scripted judge, records, services.

PostgreSQL is Debian's, started once per session by hack/postgres.sh (installed by it when
absent) as a throwaway cluster on 127.0.0.1; each test gets a database of its own.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tether_eval.redaction import Redactor, load
from tether_eval.service import Service, Settings

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    out = subprocess.run([str(REPO / "hack" / "postgres.sh"), "start"], check=True,
                         capture_output=True, text=True, timeout=300).stdout.split()
    url, directory = out[0], out[1]
    try:
        yield url
    finally:
        subprocess.run([str(REPO / "hack" / "postgres.sh"), "stop", directory], check=True,
                       timeout=60)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/eval.db"
    base: str = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def redactor() -> Redactor:
    r = load()
    r.load()  # seconds, once per session
    return r


def config_doc(judge_url: str, *, samples: int = 1, per_call: str = "0.05",
               per_day: str = "10", max_attempts: int = 3, include: dict[str, bool] | None = None,
               detector: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "rubrics": {"r1": {"instructions": "Pass when the answer does what the task asked.",
                           "verdict": {"kind": "pass_fail"}}},
        "judges": {"j1": {
            "model": {"provider": "openai-compatible", "name": "judge-2026-01-15",
                      "baseURL": judge_url + "/v1", "allowPlaintextHTTP": True,
                      "pricing": {"inputPerMTok": "1.00", "outputPerMTok": "4.00"}},
            "seed": 7, "samples": samples,
            "costCaps": {"perCallUSD": per_call, "perDayUSD": per_day},
            "retryPolicy": {"maxAttempts": max_attempts, "initialInterval": "1ms",
                            "maximumInterval": "5ms",
                            "retryOn": [429, 500, 502, 503, 504, "timeout", "connection",
                                        "malformed", "schema"],
                            # nonRetryable wins over retryOn: the calls' default lists malformed
                            "nonRetryable": [400, 401, 403, 404, 409, 422]}}},
        "policies": {"p1": {"namespace": "team-a", "spec": {
            "rubricRef": {"name": "r1"}, "judgeRef": {"name": "j1"},
            "sampling": {"rate": "0.5", "stratifyBy": ["tier"],
                         "include": include or {"failed": True, "retried": False}},
            "detector": detector or {"baselinePassRate": "0.85", "shift": "0.05",
                                     "falseAlarmEvery": 5000}}}},
    }


def record(uid: str, *, attempt: int = 1, answer: Any = "Done. TRUTH:PASS",
           sampled: bool = True, outcome: str = "answered", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1, "uid": uid, "namespace": "team-a", "task": f"task-{uid}",
        "labels": {"tier": "gold"}, "attempt": attempt,
        "policies": [{"name": "p1", "sampled": sampled}], "outcome": outcome,
        "answer": answer, "instructions": "Summarise the ticket.", "inputs": {"ticket": 42},
        "redaction": {"ok": True, "findings": {}, "engine": "test"},
        "deterministic": {"checks": [{"policy": "p1", "name": "json", "passed": True}],
                          "retries": 0, "verificationFailures": 0,
                          "limitHits": {"soft": 0, "hard": 0}, "spentUSD": "0.0123"},
        "finishedAt": "2026-11-30T12:00:00Z",
    }
    doc.update(extra)
    return doc


def settings(tmp_path: Path, db_url: str, cfg: dict[str, Any], **over: Any) -> Settings:
    path = tmp_path / "eval-config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    values: dict[str, Any] = {"config": path, "database": db_url, "host": "127.0.0.1",
                              "port": 0, "instance": "eval-test", "secrets_dir": tmp_path,
                              "concurrency": 1}
    values.update(over)
    return Settings(**values)


@pytest.fixture
async def service_factory(tmp_path: Path, db_url: str, redactor: Redactor
                          ) -> AsyncIterator[Any]:
    """``await make(cfg, **settings)``: an evaluator in this loop; closed at the end."""
    made: list[Service] = []

    async def make(cfg: dict[str, Any], **over: Any) -> Service:
        svc = await Service.open(settings(tmp_path, db_url, cfg, **over), redactor, environ={})
        made.append(svc)
        return svc

    yield make
    for svc in made:
        await svc.close()
