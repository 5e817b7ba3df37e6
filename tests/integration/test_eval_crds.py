"""The evaluation CRDs (Rubric, Judge, EvaluationPolicy; issue #10) on a real kube-apiserver:
samples accepted and read back, bad objects refused naming the field, a Rubric's spec frozen,
the descriptions served to kubectl explain, the evaluator's status accepted."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from tether_api import EvaluationPolicy, Judge, Rubric

from .conftest import Kubectl
from .invalid_eval import INVALID_EVAL, InvalidEval, invalid_object, sample

pytestmark = pytest.mark.cluster
CEL_CASES = [c for c in INVALID_EVAL if c.cel]
MODELS: dict[str, type[Rubric | Judge | EvaluationPolicy]] = {
    "Rubric": Rubric, "Judge": Judge, "EvaluationPolicy": EvaluationPolicy}


@pytest.fixture(scope="module")
def served(kubectl: Kubectl, namespace: str) -> str:
    """The namespace, once the three kinds are in discovery (a moment after Established)."""
    deadline = time.monotonic() + 60
    while kubectl("-n", namespace, "get", "rubrics,judges,evaluationpolicies").returncode:
        assert time.monotonic() < deadline, "the evaluation kinds never appeared in discovery"
        time.sleep(0.5)
    return namespace


def _create(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> Any:
    return kubectl("-n", namespace, "create", "--validate=strict", "-f", "-",
                   stdin=yaml.safe_dump(obj))


def test_samples_are_accepted_and_read_back_by_tether_api(kubectl: Kubectl, served: str) -> None:
    for kind, model in MODELS.items():
        obj = sample(kind)
        out = _create(kubectl, served, obj)
        assert out.returncode == 0, out.stderr
        back = json.loads(kubectl.ok("-n", served, "get", kind.lower(),
                                     obj["metadata"]["name"], "-o", "json"))
        assert model.model_validate(back).spec == model.model_validate(obj).spec


@pytest.mark.parametrize("case", CEL_CASES, ids=[c.name for c in CEL_CASES])
def test_invalid_object_is_refused_with_a_message_naming_the_field(
        kubectl: Kubectl, served: str, case: InvalidEval) -> None:
    out = _create(kubectl, served, invalid_object(case))
    assert out.returncode != 0, f"the API server accepted {case.name}"
    print(f"{case.name}: {out.stderr}")  # shown with -rP
    assert case.path in out.stderr, out.stderr
    assert case.words in out.stderr, out.stderr


def test_a_regex_cel_cannot_check_is_accepted_by_the_api_server(kubectl: Kubectl,
                                                                 served: str) -> None:
    """The one rule left to the operator (an Event, the policy left out of new pods):
    test_eval_env.py shows that side."""
    case = next(c for c in INVALID_EVAL if not c.cel)
    out = _create(kubectl, served, invalid_object(case))
    assert out.returncode == 0, out.stderr


def test_rubric_spec_cannot_be_edited_but_its_labels_can(kubectl: Kubectl, served: str) -> None:
    rubric = sample("Rubric")
    rubric["metadata"]["name"] = "frozen"
    assert _create(kubectl, served, rubric).returncode == 0
    edit = kubectl("-n", served, "patch", "rubric", "frozen", "--type=merge", "-p",
                   '{"spec":{"instructions":"Anything goes."}}')
    assert edit.returncode != 0, "a Rubric's instructions were edited"
    assert "Rubric spec is immutable: create a new Rubric and point the policy at it" in (
        edit.stderr), edit.stderr
    kubectl.ok("-n", served, "label", "rubric", "frozen", "owner=support")


def test_explain_describes_sampling(kubectl: Kubectl, served: str) -> None:
    deadline = time.monotonic() + 60
    while (out := kubectl("explain", "evaluationpolicy.spec.sampling")).returncode:
        assert time.monotonic() < deadline, out.stderr  # published a moment after discovery
        time.sleep(1)
    text = " ".join(out.stdout.split())
    assert "Which tasks the judge sees." in text
    assert "rate <string> -required-" in text
    assert "two policies with the same rate sample the same tasks" in text
    assert "stratifyBy <[]string>" in text


def test_status_written_by_the_evaluator_is_accepted(kubectl: Kubectl, served: str) -> None:
    policy = sample("EvaluationPolicy")
    policy["metadata"]["name"] = "with-status"
    assert _create(kubectl, served, policy).returncode == 0
    status = {"observedGeneration": 1, "records": 40, "samples": 4, "judged": 4,
              "passRate": 0.75, "passRateLower": 0.3, "passRateUpper": 0.95, "cusum": 0.4,
              "alarms": 0, "judgeSpentTodayUSD": "0.0123", "conditions": [{
                  "type": "Ready", "status": "True", "reason": "Evaluating",
                  "message": "", "lastTransitionTime": "2026-11-30T12:00:00Z"}]}
    kubectl.ok("-n", served, "patch", "evaluationpolicy", "with-status", "--subresource=status",
               "--type=merge", "-p", json.dumps({"status": status}))
    back = json.loads(kubectl.ok("-n", served, "get", "evaluationpolicy", "with-status",
                                 "-o", "json"))
    assert EvaluationPolicy.model_validate(back).status.pass_rate == 0.75
    table = kubectl.ok("-n", served, "get", "evaluationpolicy", "with-status")
    assert table.split("\n")[1].split()[:6] == [
        "with-status", "support-triage-v1", "gpt4o-judge", "0.1", "4", "0.75"], table
