"""``tether eval report``: failing samples from the store, grouped by failure pattern."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tether_api import load_agenttask
from tether_cli.main import main
from tether_eval.redaction import Redactor
from tether_eval.report import pattern
from tether_eval.service import Service
from tether_examples._serve import serve_in_thread
from tether_examples.scripted_judge import JudgeScript, ScriptedJudge

from .conftest import config_doc, record, settings
from .test_judge import drain, ingest

SAMPLE = Path(__file__).parents[2] / "crds" / "samples" / "agenttask.yaml"


def test_values_are_folded_out_of_a_pattern() -> None:
    assert pattern('Wrong total 42.5 for "ACME" sent to <EMAIL_ADDRESS>') == \
        pattern("wrong total 7 for 'Initech' sent to <PHONE_NUMBER>")


def test_the_report_groups_failing_samples(tmp_path: Path, db_url: str, redactor: Redactor,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    failed_check = [{"policy": "p1", "name": "json", "passed": False, "reason": "not JSON"}]
    docs = [record("u1"), record("u2", answer="No. TRUTH:FAIL"),
            record("u3", answer="No. TRUTH:FAIL"),
            record("u4", answer="Nope. TRUTH:FAIL",
                   deterministic={"checks": failed_check}),
            record("u5", answer="No. TRUTH:FAIL", instructions=None)]
    judge = ScriptedJudge(JudgeScript(reason_suffix=" Contact ops@example.com."))

    async def build(jurl: str) -> None:
        svc = await Service.open(settings(tmp_path, db_url, config_doc(jurl)), redactor, {})
        try:
            await ingest(svc, *docs)
            await drain(svc)
        finally:
            await svc.close()

    with serve_in_thread(judge.app()) as jurl:
        asyncio.run(build(jurl))
    assert main(["eval", "report", "--database", db_url, "--policy", "p1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["failing"] == 4
    assert [(g["count"], g["failedChecks"]) for g in out["groups"]] == [(3, []), (1, ["json"])]
    assert out["groups"][0]["examples"][0]["reason"].endswith("Contact <EMAIL_ADDRESS>.")
    assert "ops@example.com" not in json.dumps(out)
    assert main(["eval", "report", "--database", db_url, "--policy", "p1"]) == 0
    assert "4 failing sample(s) in 2 pattern(s)" in capsys.readouterr().out
    # The same cases as AgentTasks that tether run accepts, with their own task.
    out_dir = tmp_path / "cases"
    assert main(["eval", "export", "--database", db_url, "--policy", "p1", "--template",
                 str(SAMPLE), "--out", str(out_dir)]) == 0
    files = sorted(out_dir.glob("*.yaml"))
    assert len(files) == 3  # u5 carries no instructions: skipped, listed
    tasks = [load_agenttask(f) for f in files]
    assert {t.spec.task.instructions for t in tasks} == {"Summarise the ticket."}
    assert {t.spec.task.inputs["ticket"] for t in tasks} == {42}
    assert all(t.metadata.labels["tether.dev/eval-policy"] == "p1" for t in tasks)
    index = [json.loads(line) for line in (out_dir / "cases.jsonl").read_text().splitlines()]
    assert [i["skipped"]["uid"] for i in index if "skipped" in i] == ["u5"]
