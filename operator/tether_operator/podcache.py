"""The task pods as the operator's pod watch last saw them: what a reconcile reads instead of
listing pods by label.

A list by label selector costs the API server a pass over every pod in the namespace: at
10,000 tasks, one list per reconcile made the control plane, not the operator, the limit
(docs/benchmarks.md, operator at scale). The watch already delivers every task pod, so the
reconcile reads this index, as a controller-runtime informer's cache is read. What makes it
safe to decide on:

- **Read your writes.** A pod the operator creates is put in at once from the create's answer,
  so the reconcile its own status write wakes cannot miss it and make the attempt again.
- **Newer wins.** An event older than what is held (the create's answer racing its ADDED event)
  does not replace it.
- **Checked where being wrong costs.** A pod the status names but the index lacks is looked up
  before the attempt is counted lost; the periodic resync reads each indexed pod of the task
  fresh (by name, not by list), so a deletion the watch missed while it reconnected is found
  (reconcile.py).

Pods are kept trimmed to what decide, ledger and podstart read (metadata without
managedFields, ``spec.nodeName``, the status with slim container statuses), as JSON bytes
decoded when a reconcile reads them.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import orjson

from .manifests import LABEL_TASK

__all__ = ["PodCache"]

Body = dict[str, Any]
Key = tuple[str, str]
_CONTAINER_KEYS = ("name", "state", "lastState", "ready", "restartCount", "started")


def _version(pod: Body) -> int | None:
    try:
        return int(pod["metadata"].get("resourceVersion") or "")
    except ValueError:  # opaque by contract; every server we know of sends an integer
        return None


def trim(pod: Body) -> Body:
    """The parts of a pod the operator reads."""
    meta = {k: v for k, v in pod["metadata"].items() if k != "managedFields"}
    status = dict(pod.get("status") or {})
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in status:
            status[key] = [{k: c[k] for k in _CONTAINER_KEYS if k in c} for c in status[key]]
    node = (pod.get("spec") or {}).get("nodeName")
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}


class _Held(NamedTuple):
    uid: str
    version: int | None
    body: bytes  # the trimmed pod as JSON: a third of the memory of the dict


class PodCache:
    def __init__(self) -> None:
        self._by_task: dict[Key, dict[str, _Held]] = {}

    def seen(self, pod: Body, deleted: bool = False) -> None:
        """A pod from the watch (or a create's answer); ``deleted``: it is gone."""
        meta = pod["metadata"]
        task = (meta.get("labels") or {}).get(LABEL_TASK)
        if not task:
            return
        key = (meta["namespace"], task)
        pods = self._by_task.get(key, {})
        held = pods.get(meta["name"])
        same = held is not None and held.uid == meta.get("uid")
        if deleted:
            if same:
                del pods[meta["name"]]
            if not pods:
                self._by_task.pop(key, None)
            return
        version = _version(pod)
        if same and held and version is not None and held.version is not None \
                and version < held.version:
            return  # an older view than the one held
        # json, not orjson, to encode: orjson's result keeps its whole growth buffer (measured:
        # 10,000 pods of 1 KB held 39 MB, against 11.5 MB this way).
        body = json.dumps(trim(pod), separators=(",", ":")).encode()
        self._by_task.setdefault(key, {})[meta["name"]] = _Held(str(meta.get("uid")), version,
                                                                 body)

    def gone(self, ns: str, task: str, name: str) -> None:
        """A pod found to be gone by a direct read (a deletion the watch missed)."""
        pods = self._by_task.get((ns, task), {})
        pods.pop(name, None)
        if not pods:
            self._by_task.pop((ns, task), None)

    def replace(self, ns: str, task: str, pods: list[Body]) -> None:
        """All the task's pods, from a fresh list."""
        self._by_task.pop((ns, task), None)
        for pod in pods:
            self.seen(pod)

    def of(self, ns: str, task: str) -> list[Body]:
        """The task's pods (each a new dict: the caller may change it)."""
        return [orjson.loads(h.body) for h in self._by_task.get((ns, task), {}).values()]

    def __len__(self) -> int:
        return sum(len(p) for p in self._by_task.values())
