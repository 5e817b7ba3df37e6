"""The evaluator's Events and status on a real kube-apiserver: a Judge whose credentials Secret
lacks the opt-in label is refused (status and one Warning Event naming the label), and a policy's
condition turning True posts one Warning Event, not one per status write; a record is judged
once its AgentTask is terminal, and a Failed one is included for include.failed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.evaluator.conftest import record
from tether_eval.evaluate import Evaluator
from tether_eval.ingest import Ingest
from tether_eval.kube_sync import (
    list_tasks,
    mark_terminal,
    read_config,
    write_judges,
    write_statuses,
)
from tether_eval.metrics import EvalMetrics
from tether_eval.record import Record
from tether_eval.redaction import load
from tether_eval.store import Store
from tether_operator.kube import Kube

from .conftest import Kubectl

pytestmark = pytest.mark.cluster

JUDGE: dict[str, Any] = {"model": {"provider": "openai-compatible", "name": "judge-2026-01-15",
                   "baseURL": "http://127.0.0.1:9/v1", "allowPlaintextHTTP": True},
         "costCaps": {"perCallUSD": "0.05", "perDayUSD": "1"}}


def _create(kubectl: Kubectl, ns: str, kind: str, name: str, spec: dict[str, Any]) -> None:
    obj = {"apiVersion": "tether.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
           "spec": spec}
    kubectl.ok("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(obj))


def _events(kubectl: Kubectl, ns: str, name: str) -> list[tuple[str, str, str]]:
    doc = json.loads(kubectl.ok("-n", ns, "get", "events", "-o", "json", "--field-selector",
                                f"involvedObject.name={name}"))
    return sorted((e["type"], e["reason"], e["message"]) for e in doc["items"])


def _get(kubectl: Kubectl, ns: str, plural: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kubectl.ok("-n", ns, "get", plural, name, "-o", "json"))
    return out


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite://{tmp_path}/eval.db")
    yield s
    await s.close()


async def test_a_judge_whose_secret_lacks_the_opt_in_label_is_refused(
        kube: Kube, kubectl: Kubectl, namespace: str, store: Store) -> None:
    j, secret = f"j-{uuid.uuid4().hex[:6]}", f"key-{uuid.uuid4().hex[:6]}"
    kubectl.ok("-n", namespace, "create", "secret", "generic", secret,
               "--from-literal=api-key=sk-never-read")
    _create(kubectl, namespace, "Judge", j, {**JUDGE, "model": {
        **JUDGE["model"], "credentialsSecretRef": {"name": secret, "key": "api-key"}}})
    refused: dict[str, tuple[str, str]] = {}
    config = await read_config(kube, namespace, refused)
    assert j not in config.judges and refused[j][0] == "CredentialsNotAllowed"
    evaluator = Evaluator(store, config, {}, EvalMetrics(), "it")
    assert await write_judges(kube, namespace, evaluator, refused) >= 1
    assert await write_judges(kube, namespace, evaluator, refused) == 0  # unchanged
    status = _get(kubectl, namespace, "judges", j)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CredentialsNotAllowed")
    assert status["spentTodayUSD"] == "0.000000" and status["observedGeneration"] == 1
    [(kind, reason, message)] = _events(kubectl, namespace, j)  # once, not per write
    assert (kind, reason) == ("Warning", "CredentialsNotAllowed")
    assert 'tether.dev/model-credentials: "true"' in message and secret in message
    # Labelled: the Judge is used, and Ready again.
    kubectl.ok("-n", namespace, "label", "secret", secret, "tether.dev/model-credentials=true")
    refused = {}
    assert j in (await read_config(kube, namespace, refused)).judges and j not in refused
    await write_judges(kube, namespace, evaluator, refused)
    ready = next(c for c in _get(kubectl, namespace, "judges", j)["status"]["conditions"]
                 if c["type"] == "Ready")
    assert ready["status"] == "True"


async def test_a_policy_condition_turning_true_posts_one_warning(
        kube: Kube, kubectl: Kubectl, namespace: str, store: Store) -> None:
    suffix = uuid.uuid4().hex[:6]
    r, j, p = f"r-{suffix}", f"j-{suffix}", f"p-{suffix}"
    _create(kubectl, namespace, "Rubric", r, {"instructions": "Pass a good answer.",
                                               "verdict": {"kind": "pass_fail"}})
    _create(kubectl, namespace, "Judge", j, JUDGE)
    _create(kubectl, namespace, "EvaluationPolicy", p, {
        "rubricRef": {"name": r}, "judgeRef": {"name": j}, "sampling": {"rate": "0.5"}})
    config = await read_config(kube, namespace)
    evaluator = Evaluator(store, config, {}, EvalMetrics(), "it")
    assert await write_statuses(kube, namespace, evaluator) >= 1
    assert _events(kubectl, namespace, p) == []  # all well: nothing to say
    failed = record("u1", namespace=namespace, policies=[{"name": p, "sampled": True}],
                    answer=None, instructions=None, inputs=None,
                    redaction={"ok": False, "findings": {}, "engine": "test"})
    await store.put_record(failed, "{}", [])
    for _ in range(2):
        await write_statuses(kube, namespace, evaluator)
    [(kind, reason, message)] = _events(kubectl, namespace, p)
    assert (kind, reason) == ("Warning", "RedactionFailures") and "1 record(s)" in message


async def test_a_record_waits_for_its_agenttask_to_end_and_a_failed_one_is_included(
        kube: Kube, kubectl: Kubectl, namespace: str, store: Store) -> None:
    suffix = uuid.uuid4().hex[:6]
    r, j, p, t = f"r-{suffix}", f"j-{suffix}", f"p-{suffix}", f"t-{suffix}"
    _create(kubectl, namespace, "Rubric", r, {"instructions": "Pass a good answer.",
                                               "verdict": {"kind": "pass_fail"}})
    _create(kubectl, namespace, "Judge", j, JUDGE)
    _create(kubectl, namespace, "EvaluationPolicy", p, {
        "rubricRef": {"name": r}, "judgeRef": {"name": j},
        "sampling": {"rate": "0.5", "include": {"failed": True}}})
    _create(kubectl, namespace, "AgentTask", t, {
        "agent": {"image": "example.com/agent:1"}, "task": {"instructions": "x"},
        "model": {"provider": "openai", "name": "gpt-4o"},
        "costEnvelope": {"hardLimitUSD": "1.00"}})
    uid = _get(kubectl, namespace, "agenttasks", t)["metadata"]["uid"]
    config = await read_config(kube, namespace)
    ingest = Ingest(store, config, load(), EvalMetrics())
    ingest.terminal_on_arrival = False  # as in a cluster
    # Answered, not in the sample: nothing to judge yet, and the task still runs.
    doc = record(uid, namespace=namespace, policies=[{"name": p, "sampled": False}])
    assert await ingest.accept(Record.model_validate(doc)) == (True, [])

    async def this_task() -> list[dict[str, Any]]:
        # The namespace is the session's: other tests' tasks, some ended, share it.
        return [x for x in await list_tasks(kube, namespace) if x["metadata"]["uid"] == uid]

    assert len(await this_task()) == 1
    assert await mark_terminal(await this_task(), ingest) == 0
    assert await store.claim("it", now=1.0, lease=60.0, limit=5) == []
    kubectl.ok("-n", namespace, "patch", "agenttask", t, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"phase": "Failed", "attempt": 1}}))
    assert await mark_terminal(await this_task(), ingest) == 1
    assert await mark_terminal(await this_task(), ingest) == 0  # known
    [claim] = await store.claim("it", now=1.0, lease=60.0, limit=5)
    assert (claim.uid, claim.policy, claim.why, claim.phase) == (uid, p, "failed", "Failed")
