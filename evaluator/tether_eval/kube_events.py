"""The evaluator's Events and its Judges' status, through the operator's Kube client.

Events are posted on a condition's transition, not per sample: a policy's Degraded, JudgeDrift,
JudgeCapReached or RedactionFailures turning True is a Warning (DriftDetected, JudgeDrift,
JudgeCapReached, RedactionFailures), turning back False a Normal; a Judge refused (its
credentials Secret missing or without the opt-in label ``tether.dev/model-credentials: "true"``,
the operator's rule in :mod:`tether_operator.guards`) is a Warning on the Judge when its Ready
condition turns False. The transition is read from the status the evaluator writes, so a restart
does not repeat an Event for a condition already recorded.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from tether_api import usd
from tether_api.evaluation import JudgeStatus
from tether_operator.conditions import merge, want
from tether_operator.guards import CREDENTIALS_LABEL, PARTIAL_METADATA
from tether_operator.kube import GROUP, MERGE, VERSION, ApiError, Kube

from .config import JudgeSpec

__all__ = ["credentials_problem", "judge_status", "patch_status", "post_event", "transitions"]

log = logging.getLogger(__name__)
Body = dict[str, Any]

# condition type -> (reason when it turns True: a Warning, reason when it turns False: Normal)
EVENTS = {"Degraded": ("DriftDetected", "DriftCleared"),
          "JudgeDrift": ("JudgeDrift", "JudgeSteady"),
          "JudgeCapReached": ("JudgeCapReached", "JudgeCapLifted"),
          "RedactionFailures": ("RedactionFailures", "RedactionFailuresCleared"),
          "Ready": ("", "InvalidJudge")}


def transitions(old: list[Body] | None, new: list[Body]) -> list[tuple[str, str, str]]:
    """Pure: the Events ``(type, reason, message)`` for conditions that changed status."""
    before = {c["type"]: c["status"] for c in old or []}
    out = []
    for cond in new:
        reasons = EVENTS.get(cond["type"])
        was, now = before.get(cond["type"]), cond["status"]
        if reasons is None or was == now:
            continue
        if cond["type"] == "Ready":  # a Judge refused: its reason names why
            if now == "False":
                out.append(("Warning", cond["reason"], cond["message"]))
        elif now == "True":
            out.append(("Warning", reasons[0], cond["message"]))
        elif now == "False" and was == "True":
            out.append(("Normal", reasons[1], cond["message"]))
    return out


async def post_event(kube: Kube, obj: Body, type_: str, reason: str, message: str) -> None:
    """An Event on ``obj`` (a policy or Judge as listed); its loss is logged, not raised."""
    await kube.event_on(obj, type_, reason, message, component="tether-evaluator")


async def credentials_problem(kube: Kube, ns: str, name: str, spec: JudgeSpec
                              ) -> tuple[str, str] | None:
    """Why the Judge's credentials Secret may not be used (reason, message), or None. Its
    metadata alone is read: the evaluator reads the key from the mounted Secret."""
    ref = spec.model.credentials_secret_ref
    if ref is None:
        return None
    try:
        meta = await kube.request("GET", f"/api/v1/namespaces/{ns}/secrets/{quote(ref.name)}",
                                  accept=PARTIAL_METADATA)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return ("CredentialsNotFound", f"Judge {name}: Secret {ref.name} "
                "(spec.model.credentialsSecretRef) does not exist in namespace "
                f"{ns}: create it with the label {CREDENTIALS_LABEL}=true")
    labels = (meta.get("metadata") or {}).get("labels") or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        return ("CredentialsNotAllowed", f"Judge {name}: Secret {ref.name} "
                f'(spec.model.credentialsSecretRef) lacks the label {CREDENTIALS_LABEL}: "true" '
                f"that lets tether use it: if it may, run `kubectl -n {ns} label secret "
                f"{ref.name} {CREDENTIALS_LABEL}=true`; the Judge is not used until then")
    return None


def judge_status(old: Body | None, refused: tuple[str, str] | None, capped: bool,
                 spent: Decimal, now: datetime, generation: int) -> Body:
    """Pure: a Judge's status (Ready, JudgeCapReached, the day's spend)."""
    conds = [want("Ready", refused is None, refused[0] if refused else "Judging",
                  refused[1] if refused else "the evaluator judges with it"),
             want("JudgeCapReached", capped, "DailyCapReached" if capped else "WithinCap",
                  "perDayUSD reached: judging waits for the next UTC day" if capped
                  else f"spent {usd(spent)} USD today")]
    doc = {"spentTodayUSD": usd(spent), "observedGeneration": generation,
           "conditions": merge((old or {}).get("conditions"), conds, now, generation)}
    return JudgeStatus.model_validate(doc).model_dump(mode="json", by_alias=True,
                                                      exclude_none=True)


async def patch_status(kube: Kube, obj: Body, kind: str, plural: str, new: Body) -> bool:
    """Merge-patch ``new`` into the object's status when it differs, posting the Events of
    its condition transitions; False when unchanged or deleted since listed."""
    obj = {**obj, "kind": kind}
    old = obj.get("status") or {}
    if new == old:
        return False
    meta = obj["metadata"]
    path = (f"/apis/{GROUP}/{VERSION}/namespaces/{meta['namespace']}/{plural}/"
            f"{meta['name']}/status")
    try:
        await kube.request("PATCH", path, {"status": new}, content_type=MERGE)
    except ApiError as exc:
        if exc.status == 404:  # deleted since it was listed: nothing to write
            return False
        raise
    for type_, reason, message in transitions(old.get("conditions"), new["conditions"]):
        await post_event(kube, obj, type_, reason, message)
    return True
