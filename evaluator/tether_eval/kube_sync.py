"""The evaluator and the API server: its Rubrics, Judges and EvaluationPolicies read from one
namespace, and each policy's status written back — through the operator's client
(:class:`tether_operator.kube.Kube`) as a library.

A Rubric, Judge or policy that does not validate (the CRDs' own rules let few through) or a
policy naming a Rubric or Judge that does not exist is left out with a warning; the rest work.
Status: computed by :func:`status.policy_status` from the store and merged into the policy's
current conditions (so transition times survive), written with a merge patch to the ``status``
subresource only when it changed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from tether_operator.kube import GROUP, VERSION, ApiError, Kube

from .anchors import AnchorsError, AnchorSource
from .config import EvalConfig, JudgeSpec, Policy, RubricSpec
from .evaluate import Evaluator, utc_day
from .ingest import Ingest
from .kube_events import credentials_problem, judge_status, patch_status
from .record import Record
from .status import policy_status
from .tasks import TERMINAL, no_record

__all__ = ["configmap_source", "list_tasks", "mark_terminal", "read_config", "store_missing",
           "write_judges", "write_statuses"]

log = logging.getLogger(__name__)


def _path(ns: str, plural: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


async def _items(kube: Kube, ns: str, plural: str) -> list[dict[str, Any]]:
    doc = await kube.request("GET", _path(ns, plural))
    items: list[dict[str, Any]] = doc["items"]
    return items


def _valid(kind: str, items: list[dict[str, Any]], model: Any,
           invalid: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    out = {}
    for obj in items:
        name = obj["metadata"]["name"]
        try:
            out[name] = model(obj.get("spec") or {})
        except ValidationError as exc:
            log.warning("Ignored %s %s: its spec does not validate: %s", kind, name, exc)
            if invalid is not None:
                invalid[name] = (f"Invalid{kind}", f"{kind} {name}: its spec does not "
                                 f"validate, so it is not used: {exc}")
    return out


async def read_config(kube: Kube, ns: str,
                      refused: dict[str, tuple[str, str]] | None = None) -> EvalConfig:
    """The namespace's Rubrics, Judges and EvaluationPolicies as the evaluator's config. A
    Judge whose credentials Secret lacks the opt-in label is left out, with why in
    ``refused`` (name -> (reason, message)) for its status and Event."""
    rubrics = _valid("Rubric", await _items(kube, ns, "rubrics"), RubricSpec.model_validate)
    judges = _valid("Judge", await _items(kube, ns, "judges"), JudgeSpec.model_validate,
                    refused)
    for name, spec in list(judges.items()):
        problem = await credentials_problem(kube, ns, name, spec)
        if problem is not None:
            log.warning("Ignored Judge %s/%s: %s", ns, name, problem[1])
            del judges[name]
            if refused is not None:
                refused[name] = problem
    items = await _items(kube, ns, "evaluationpolicies")
    policies = _valid("EvaluationPolicy", items,
                      lambda spec: Policy.model_validate({"namespace": ns, "spec": spec}))
    for obj in items:  # when it was made bounds the records it takes up (backfill)
        name, made = obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")
        if name in policies and made:
            policies[name] = policies[name].model_copy(
                update={"created": datetime.fromisoformat(made)})
    for name, pol in list(policies.items()):
        missing = [f"Rubric {pol.rubric}"] if pol.rubric not in rubrics else []
        missing += [f"Judge {pol.judge}"] if pol.judge not in judges else []
        if missing:
            log.warning("Ignored EvaluationPolicy %s/%s: no %s", ns, name, " and no ".join(missing))
            del policies[name]
    return EvalConfig(rubrics=rubrics, judges=judges, policies=policies)


async def write_statuses(kube: Kube, ns: str, evaluator: Evaluator) -> int:
    """Write the status of every policy the evaluator judges for; returns how many changed."""
    changed = 0
    for obj in await _items(kube, ns, "evaluationpolicies"):
        name = obj["metadata"]["name"]
        if name not in evaluator.config.policies:
            continue
        old = obj.get("status") or {}
        new = policy_status(await evaluator.facts(name), old, datetime.now(UTC),
                            int(obj["metadata"].get("generation", 0)))
        changed += await patch_status(kube, obj, "EvaluationPolicy", "evaluationpolicies", new)
    return changed


async def write_judges(kube: Kube, ns: str, evaluator: Evaluator,
                       refused: dict[str, tuple[str, str]]) -> int:
    """Write every Judge's status (refused or judging, capped, spent today); returns how
    many changed. A refused Judge gets a Warning Event once, when it turns not Ready."""
    changed = 0
    for obj in await _items(kube, ns, "judges"):
        name = obj["metadata"]["name"]
        new = judge_status(obj.get("status"), refused.get(name), name in evaluator.capped,
                           await evaluator.store.spent(name, utc_day()), datetime.now(UTC),
                           int(obj["metadata"].get("generation", 0)))
        changed += await patch_status(kube, obj, "Judge", "judges", new)
    return changed


def configmap_source(kube: Kube, ns: str) -> AnchorSource:
    """A policy's anchors from its ``anchors.configMapRef`` ConfigMap in ``ns``."""
    async def read(policy: Policy) -> str:
        assert policy.spec.anchors is not None
        ref = policy.spec.anchors.config_map_ref
        try:
            doc = await kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{ref.name}")
        except ApiError as exc:
            raise AnchorsError(f"ConfigMap {ns}/{ref.name} (anchors.configMapRef): {exc}; "
                               "create it with the anchors as JSON lines") from exc
        data = doc.get("data") or {}
        if ref.key not in data:
            raise AnchorsError(f"ConfigMap {ns}/{ref.name} has no key {ref.key!r} "
                               f"(anchors.configMapRef.key); it has {sorted(data)}")
        return str(data[ref.key])
    return read


async def list_tasks(kube: Kube, ns: str) -> list[dict[str, Any]]:
    return await _items(kube, ns, "agenttasks")


async def mark_terminal(tasks: list[dict[str, Any]], ingest: Ingest) -> int:
    """Tell the store which tasks are over, with their final phase and attempt (their latest
    record is judged from then on; a task that did not succeed is queued for the policies
    that include failed tasks); returns how many were new."""
    include_failed = [name for name, pol in ingest.config.policies.items()
                      if pol.spec.sampling.include.failed]
    marked = 0
    for task in tasks:
        status = task.get("status") or {}
        phase = status.get("phase")
        if phase not in TERMINAL:
            continue
        attempt = max(1, int(status.get("attempt") or 1))
        if await ingest.store.set_terminal(task["metadata"]["uid"], attempt, phase,
                                           include_failed):
            marked += 1
    return marked


async def store_missing(kube: Kube, ns: str, tasks: list[dict[str, Any]], ingest: Ingest,
                        grace: timedelta) -> int:
    """Store ``no_record`` for each terminal task of ``ns`` whose final attempt's record has
    not come within ``grace``; returns how many were stored."""
    policies = await _items(kube, ns, "evaluationpolicies")
    stored = 0
    for task in tasks:
        doc = no_record(task, policies, datetime.now(UTC), grace)
        if doc is None or await ingest.store.record(doc["uid"], doc["attempt"]) is not None:
            continue
        new, _ = await ingest.accept(Record.model_validate(doc))
        if new:
            log.warning("Task %s/%s ended without a record: stored as no_record", ns,
                        doc["task"])
            stored += 1
    return stored
