"""TETHER_EVALUATION (issue #10, step 1): which policies a task's sidecar is told about, and
what it is told. Pure: tether_operator.evaluation.evaluation_env and manifests.pod; the
policy listing against a real API server is in tests/integration/test_eval_env.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from tether_api.sampling import sampled
from tether_operator import manifests
from tether_operator.evaluation import ENV, evaluation_env, problem
from tether_operator.settings import OperatorSettings

from ..integration.invalid_eval import sample

URL = "http://tether-evaluator.tether-system.svc:8080"
Body = dict[str, Any]


def policy(name: str, rate: str = "0.5", ns: str = "team-a", **selector: str) -> Body:
    body = sample("EvaluationPolicy")
    body["metadata"].update(name=name, namespace=ns)
    body["spec"]["selector"] = {"matchLabels": selector}
    body["spec"]["sampling"]["rate"] = rate
    return body


def task(uid: str = "u-1", ns: str = "team-a", **labels: str) -> Body:
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": "t1", "namespace": ns, "uid": uid, "labels": labels},
            "spec": {"agent": {"image": "example/agent:1"}, "task": {"instructions": "x"},
                     "model": {"provider": "openai", "name": "gpt-4o"},
                     "costEnvelope": {"hardLimitUSD": "1.00"}}}


def test_no_policy_selecting_the_task_means_no_variable() -> None:
    assert evaluation_env([], task(team="support"), URL) is None
    assert evaluation_env([policy("p", team="billing")], task(team="support"), URL) is None
    other_ns = policy("p", ns="team-b", team="support")
    assert evaluation_env([other_ns], task(team="support"), URL) is None


def test_the_variable_holds_the_selecting_policies_as_the_contract_says() -> None:
    t = task(team="support")
    env = evaluation_env([policy("zeta", "0.3", team="support"), policy("alpha", "1"),
                          policy("other", team="billing")], t, URL)
    assert env is not None
    doc = json.loads(env)
    assert doc["evaluatorURL"] == URL
    assert [p["name"] for p in doc["policies"]] == ["alpha", "zeta"]  # by name; not "other"
    alpha, zeta = doc["policies"]
    assert alpha["sampled"] is True  # rate 1
    assert zeta["sampled"] is sampled("u-1", "0.3")
    assert zeta["include"] == {"failed": True, "retried": False}
    assert zeta["checks"] == [
        {"name": "triage-shape", "target": "answer",
         "jsonSchema": policy("x")["spec"]["checks"][0]["jsonSchema"]},
        {"name": "no-placeholder", "target": "answer", "regex": "^(?!.*TODO)"}]
    assert set(doc) == {"evaluatorURL", "policies"}
    assert set(zeta) == {"name", "checks", "sampled", "include"}


def test_sampled_follows_the_task_uid() -> None:
    uids = [f"uid-{i}" for i in range(200)]
    got = [json.loads(evaluation_env([policy("p", "0.25")], task(u), URL) or "")[
        "policies"][0]["sampled"] for u in uids]
    assert got == [sampled(u, "0.25") for u in uids]
    assert 20 < sum(got) < 80  # the hash varies with the UID: not all or none


def test_a_policy_tether_api_refuses_is_left_out() -> None:
    bad = policy("bad")
    bad["spec"]["checks"][1]["regex"] = "(unclosed"
    why = problem(bad)
    assert why is not None and "spec.checks.1" in why and "does not compile" in why
    assert evaluation_env([bad], task(), URL) is None
    env = evaluation_env([bad, policy("good")], task(), URL)
    assert [p["name"] for p in json.loads(env or "")["policies"]] == ["good"]


def test_the_sidecar_alone_gets_the_variable() -> None:
    settings = OperatorSettings(leader_election=False, evaluator_url=URL,
                                sidecar_http_proxy="http://proxy:3128")
    body = task(team="support")
    env = evaluation_env([policy("p", team="support")], body, URL)
    made = manifests.pod(body, 1, settings, None, env)
    sidecar, agent = made["spec"]["initContainers"][0], made["spec"]["containers"][0]
    assert {"name": ENV, "value": env} in sidecar["env"]
    assert {"name": "HTTP_PROXY", "value": "http://proxy:3128"} in sidecar["env"]
    assert all(e["name"] != ENV for e in agent["env"])
    plain = manifests.pod(copy.deepcopy(body), 1, OperatorSettings(leader_election=False), None)
    assert "env" not in plain["spec"]["initContainers"][0]


@pytest.mark.parametrize("url", ["tether-evaluator:8080", "ftp://x"])
def test_the_evaluator_url_setting_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match="evaluator_url"):
        OperatorSettings(leader_election=False, evaluator_url=url)


def test_the_sidecar_reads_what_the_operator_writes() -> None:
    """The two ends of the contract: the sidecar's parser (tether_sidecar.eval_config) takes
    the operator's TETHER_EVALUATION as is."""
    from tether_sidecar.eval_config import Evaluation

    env = evaluation_env([policy("p", "1", team="support")], task(team="support"), URL)
    read = Evaluation.model_validate_json(env or "")
    assert read.evaluator_url == URL
    assert [(p.name, p.sampled, p.include.failed) for p in read.policies] == [("p", True, True)]
    assert [c.name for c in read.policies[0].checks] == ["triage-shape", "no-placeholder"]
