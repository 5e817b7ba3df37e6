"""tether_api.evaluation (issue #10): the samples load, tether_api refuses what the CRDs refuse
(tests/integration/invalid_eval.py, shared with the API server's test), rubric_hash is
canonical, and the generated CRDs carry the rules and columns. No cluster."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from tether_api import EvaluationPolicy, Judge, Rubric, RubricSpec, rubric_hash
from tether_operator import crdgen

from ..integration.invalid_eval import INVALID_EVAL, InvalidEval, invalid_object, sample

MODELS: dict[str, type[BaseModel]] = {"Rubric": Rubric, "Judge": Judge,
                                      "EvaluationPolicy": EvaluationPolicy}


def test_samples_are_valid() -> None:
    policy = EvaluationPolicy.model_validate(sample("EvaluationPolicy"))
    assert policy.spec.sampling.rate == Decimal("0.1")
    assert [c.name for c in policy.spec.checks] == ["triage-shape", "no-placeholder"]
    judge = Judge.model_validate(sample("Judge"))
    assert (judge.spec.samples, judge.spec.model.name) == (3, "gpt-4o-2024-08-06")
    assert Rubric.model_validate(sample("Rubric")).spec.verdict.pass_threshold == Decimal("0.7")


@pytest.mark.parametrize("case", INVALID_EVAL, ids=[c.name for c in INVALID_EVAL])
def test_tether_api_refuses_what_the_api_server_refuses(case: InvalidEval) -> None:
    with pytest.raises(ValidationError) as caught:
        MODELS[case.kind].model_validate(invalid_object(case))
    if not case.schema:  # our own message: the same words as the CEL rule's
        assert case.words in str(caught.value), str(caught.value)


@pytest.mark.parametrize(("name", "provider"), [
    ("gpt-4o-2024-08-06", "openai"), ("claude-3-5-sonnet-20241022", "anthropic"),
    ("llama-3.1-70b-instruct", "openai-compatible")])
def test_pinned_names_are_accepted(name: str, provider: str) -> None:
    judge = sample("Judge")
    judge["spec"]["model"].update(name=name, provider=provider)
    if provider == "openai-compatible":
        judge["spec"]["model"]["baseURL"] = "https://vllm.example/v1"
    assert Judge.model_validate(judge).spec.model.name == name


def test_rubric_hash_is_canonical() -> None:
    spec = sample("Rubric")["spec"]
    reordered = {"verdict": {"passThreshold": "0.7", "kind": "score"},
                 "instructions": spec["instructions"]}
    assert rubric_hash(spec) == rubric_hash(reordered) == rubric_hash(
        RubricSpec.model_validate(spec))
    assert rubric_hash(spec).startswith("sha256:") and len(rubric_hash(spec)) == 71
    same_threshold = {**spec, "verdict": {"kind": "score", "passThreshold": "0.700"}}
    assert rubric_hash(same_threshold) == rubric_hash(spec)
    edited = {**spec, "instructions": spec["instructions"] + " Be strict."}
    assert rubric_hash(edited) != rubric_hash(spec)


def test_rubric_hash_pinned_value() -> None:
    """The hash is stamped on stored verdicts: a change of canonical form must be deliberate."""
    spec = {"instructions": "Say yes.", "verdict": {"kind": "pass_fail"}}
    assert rubric_hash(spec) == (
        "sha256:" + hashlib.sha256(
            b'{"instructions":"Say yes.","verdict":{"kind":"pass_fail"}}').hexdigest())


def _crd(plural: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(crdgen.generate()[f"{plural}.tether.dev.yaml"])
    return doc


def test_rubric_spec_is_immutable_in_the_crd() -> None:
    spec = _crd("rubrics")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"]
    assert spec["x-kubernetes-validations"] == [{
        "rule": "self == oldSelf",
        "message": "Rubric spec is immutable: create a new Rubric and point the policy at it"}]


def test_policy_columns_read_spec_and_the_evaluators_status() -> None:
    version = _crd("evaluationpolicies")["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Rubric": ".spec.rubricRef.name", "Judge": ".spec.judgeRef.name",
        "Rate": ".spec.sampling.rate", "Judged": ".status.judged",
        "Pass-Rate": ".status.passRate", "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Age": ".metadata.creationTimestamp"}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"judged", "passRate", "conditions"} <= set(status)


def test_judge_keeps_the_task_models_rules() -> None:
    """The Judge's model is an AgentTask's ModelSpec: its baseURL rules hold there too."""
    judge = sample("Judge")
    judge["spec"]["model"].update(provider="openai-compatible", name="m-2024-01-01")
    with pytest.raises(ValidationError, match="provider openai-compatible needs baseURL"):
        Judge.model_validate(judge)
    rules = _crd("judges")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"]["properties"]["model"]["x-kubernetes-validations"]
    assert len(rules) == 4 and all(r["message"] for r in rules)
