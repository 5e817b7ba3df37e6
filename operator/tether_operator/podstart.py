"""Pure: why a pod cannot start, from its status and its Warning Events, and when to look at a
pending pod again. No I/O here.

The kubelet says it in different places: a container's waiting reason (an image that cannot be
pulled, a Secret or ConfigMap an env var refers to), the PodScheduled condition (a claim left
unbound), or only an Event (a Secret or ConfigMap volume that cannot mount: FailedMount, while
the containers wait in PodInitializing). The reasons returned are the task's ``Ready``
condition reasons and Event reasons (docs/operator.md, Conditions and Events).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["look_again", "start_blocker"]

Body = dict[str, Any]
_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "ErrImageNeverPull", "RegistryUnavailable"})
_START_REASONS = frozenset({"CreateContainerError", "RunContainerError", "CrashLoopBackOff"})

def start_blocker(pod: Body, warnings: list[Body] | None = None) -> tuple[str, str] | None:
    """Why ``pod`` cannot start, as (condition reason, message naming the container and its
    waiting reason and message), or None. Init containers count: the sidecar is one. A
    Secret or ConfigMap volume that cannot mount shows only in the pod's ``warnings`` (Events,
    reason FailedMount): the containers just wait in PodInitializing."""
    status = pod.get("status") or {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses")
                                                              or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        why, text = waiting.get("reason") or "", waiting.get("message") or ""
        lower = text.lower()
        if why in _PULL_REASONS:
            kind = "ImagePullFailed"
        elif why == "CreateContainerConfigError":
            kind = ("SecretMissing" if "secret" in lower else
                    "ConfigMapMissing" if "configmap" in lower else "PodCannotStart")
        elif why in _START_REASONS:
            kind = "PodCannotStart"
        else:
            continue
        return kind, f"container {cs.get('name')}: {why}" + (f": {text}" if text else "")
    for cond in status.get("conditions") or []:
        message = cond.get("message") or ""
        if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and "persistentvolumeclaim" in message.lower()):
            return "VolumeNotBound", f"pod unschedulable: {message}"
    return _mount_blocker(warnings or [])


def _mount_blocker(warnings: list[Body]) -> tuple[str, str] | None:
    for event in sorted(warnings, key=lambda e: str(e.get("lastTimestamp") or ""),
                        reverse=True):
        text = event.get("message") or ""
        if event.get("reason") != "FailedMount":
            continue
        lower = text.lower()
        kind = ("SecretMissing" if "secret" in lower and "not found" in lower else
                "ConfigMapMissing" if "configmap" in lower and "not found" in lower else
                "PodCannotStart")
        return kind, f"FailedMount: {text}"
    return None


def _parse(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ") if text else None


def look_again(pod: Body, now: datetime, poll_seconds: float) -> float | None:
    """When to look at a pod that is not ready again, if no pod event will wake us.

    A failing Secret or ConfigMap mount changes nothing on the pod (only an Event says it), so
    a pod on a node that has not started is looked at again: every status poll while young,
    less often as it ages (a thousand pods held by a slow node must not cost a thousand reads
    every poll). A pod not yet on a node is waiting for room; the scheduler's verdict comes as
    a pod event, so no timer.
    """
    if (pod.get("status") or {}).get("phase") not in (None, "Pending") or not (
            pod.get("spec") or {}).get("nodeName"):
        return None
    created = _parse(pod["metadata"].get("creationTimestamp")) or now
    age = (now - created).total_seconds()
    return min(max(poll_seconds, age / 4), 60.0)
