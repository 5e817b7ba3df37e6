"""The EvaluationPolicies that select a task, handed to its sidecar as ``TETHER_EVALUATION``
(issue #10, "Who does what at the end of a task", step 1).

Pure part: ``evaluation_env`` turns the namespace's policies and a task into the variable's JSON
(or None: no policy selects the task, no variable). I/O part: ``PolicyBook`` lists a namespace's
policies the way BudgetBook lists budgets: read fresh when a pod is made in a namespace the
policy watch has shown policies in, not read at all where it has shown none. So an edited policy
reaches the next pod made after the edit; a policy created in a namespace that had none reaches
the pods made once its watch event has arrived.

A policy the API server accepted but tether_api refuses (a ``checks[].regex`` that the
sidecar's ``regex`` module cannot compile: CEL cannot check that) is left out of new pods, with a
Warning Event ``InvalidPolicy`` on it once per resourceVersion; the task still runs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from tether_api.evaluation import EvaluationPolicySpec
from tether_api.sampling import sampled

from .budgets import selects
from .kube import ApiError, Kube

__all__ = ["ENV", "PolicyBook", "entry", "evaluation_env", "problem"]

log = logging.getLogger(__name__)
ENV = "TETHER_EVALUATION"
Body = dict[str, Any]
_PATH = "/apis/tether.dev/v1alpha1/namespaces/{ns}/evaluationpolicies"


def problem(policy: Body) -> str | None:
    """Why tether_api refuses the policy's spec (every problem, by field), or None."""
    try:
        EvaluationPolicySpec.model_validate(policy.get("spec") or {})
    except ValidationError as exc:
        return "; ".join(
            "spec." + ".".join(str(p) for p in err["loc"]) + ": "
            + err["msg"].removeprefix("Value error, ") for err in exc.errors(include_url=False))
    return None


def entry(policy: Body, task: Body) -> Body:
    """One policy as the sidecar reads it: its checks, whether the task is in its sample, and
    which tasks it judges whatever the sample says."""
    spec = EvaluationPolicySpec.model_validate(policy["spec"])
    return {
        "name": policy["metadata"]["name"],
        "checks": [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                   for c in spec.checks],
        "sampled": sampled(task["metadata"]["uid"], spec.sampling.rate),
        "include": spec.sampling.include.model_dump(mode="json", by_alias=True),
    }


def evaluation_env(policies: list[Body], task: Body, evaluator_url: str) -> str | None:
    """``TETHER_EVALUATION`` for the task's sidecar: the valid policies selecting it, by name;
    None when there is none."""
    chosen = sorted((p for p in policies if selects(p, task) and problem(p) is None),
                    key=lambda p: str(p["metadata"]["name"]))
    if not chosen:
        return None
    return json.dumps({"evaluatorURL": evaluator_url,
                       "policies": [entry(p, task) for p in chosen]}, separators=(",", ":"))


class PolicyBook:
    """The namespace's EvaluationPolicies, read when a pod is made (see the module's doc)."""

    def __init__(self, kube: Kube, evaluator_url: str) -> None:
        self.kube, self.evaluator_url = kube, evaluator_url
        self._names: dict[str, set[str]] = {}  # policy names per namespace, as last seen
        self._listed: set[str] = set()  # namespaces read since start
        self._warned: set[tuple[str, str, str]] = set()  # (ns, name, resourceVersion)

    def seen(self, policy: Body, deleted: bool) -> None:
        """A policy event from the watch: which namespaces have policies."""
        ns, name = policy["metadata"]["namespace"], policy["metadata"]["name"]
        names = self._names.setdefault(ns, set())
        (names.discard if deleted else names.add)(name)

    async def policies_in(self, ns: str) -> list[Body]:
        if ns in self._listed and not self._names.get(ns):
            return []
        try:
            found: list[Body] = (await self.kube.request("GET", _PATH.format(ns=ns)))["items"]
        except ApiError as exc:
            if exc.status not in (403, 404):
                raise  # a passing fault: the reconcile is tried again
            # No CRD (404) or no RBAC (403): evaluation is not set up here, so the task runs
            # without it rather than not at all; said on every pod made, until it is fixed.
            log.warning("Listing evaluationpolicies in %s failed (%s: %s): tasks there get no "
                        "evaluation; install the CRD (crds/evaluationpolicies.tether.dev.yaml) "
                        "and let the operator list and watch evaluationpolicies", ns,
                        exc.status, exc.reason)
            return []
        self._listed.add(ns)
        self._names[ns] = {p["metadata"]["name"] for p in found}
        return found

    async def env_for(self, task: Body) -> str | None:
        """The task's ``TETHER_EVALUATION``, or None (no policy selects it, or no evaluator URL
        is set: then nothing could receive the records)."""
        meta = task["metadata"]
        policies = [p for p in await self.policies_in(meta["namespace"]) if selects(p, task)]
        if not policies:
            return None
        if not self.evaluator_url:
            log.warning("Evaluationpolicies %s select agenttask %s/%s but no evaluator URL is "
                        "set (TETHER_OPERATOR_EVALUATOR_URL, chart value evaluator.url): its "
                        "pod gets no evaluation", ", ".join(p["metadata"]["name"] for p in
                                                            policies), meta["namespace"],
                        meta["name"])
            return None
        for policy in policies:
            await self._warn_invalid(policy)
        return evaluation_env(policies, task, self.evaluator_url)

    async def _warn_invalid(self, policy: Body) -> None:
        meta = policy["metadata"]
        key = (meta["namespace"], meta["name"], str(meta.get("resourceVersion")))
        if key in self._warned or (why := problem(policy)) is None:
            return
        self._warned.add(key)
        log.warning("Evaluationpolicy %s/%s left out of new pods: %s", meta["namespace"],
                    meta["name"], why)
        await self.kube.event_on({"kind": "EvaluationPolicy", **policy}, "Warning",
                                 "InvalidPolicy", f"Left out of new pods: {why}"[:1024])
