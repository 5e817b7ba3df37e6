"""When an edit of each AgentTask spec field takes effect (issue #9, docs/operator.md).

Three kinds of field:

* ``immutable``: fixed once the task has started (``status.phase`` is no longer ``Pending``).
  The CRD refuses the edit (a CEL transition rule at the object's root, generated from this
  table by ``tether_operator.crdgen``); the message says to create a new AgentTask instead.
  Changing what the agent is asked, which model it talks to, or its code mid-run would mix two
  tasks in one journal and one spend ledger.
* ``live``: applied to the running attempt (the sidecar re-reads its task file; the operator
  resizes budget holds and deadlines).
* ``next-attempt``: taken by the next pod (or the next start of the sidecar).

Pure data: the operator, the docs test and the CRD generator read it; nothing here does I/O.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["EDITS", "IMMUTABLE_MESSAGE", "EditKind", "edit_rules", "immutable_fields"]

EditKind = Literal["immutable", "live", "next-attempt"]

# Every field of AgentTaskSpec (dotted below spec), most specific path first where a field
# splits: spec.agent is immutable but for its resources and imagePullPolicy.
EDITS: dict[str, EditKind] = {
    "task": "immutable",
    "model": "immutable",
    "agent.image": "immutable",
    "agent.command": "immutable",
    "agent.args": "immutable",
    "agent.env": "immutable",
    "checkpoint": "immutable",
    "costEnvelope": "live",
    "retryPolicy.pod": "live",
    "activeDeadlineSeconds": "live",
    "tools": "next-attempt",
    "retryPolicy.calls": "next-attempt",
    "contextBudget": "next-attempt",
    "observability": "next-attempt",
    "agent.resources": "next-attempt",
    "agent.imagePullPolicy": "next-attempt",
}

# Spec fields the API server always has (required by the schema): no has() test needed.
_REQUIRED = {"task", "model", "agent.image"}

IMMUTABLE_MESSAGE = ("cannot change once the task has started (status.phase is no longer "
                     "Pending): create a new AgentTask instead")

# The rule must hold on a task never written by the operator (no status yet) and on one that
# waits for admission (Pending): those may still be edited freely.
_NOT_STARTED = ("!has(oldSelf.status) || !has(oldSelf.status.phase) || "
                "oldSelf.status.phase == 'Pending'")


def immutable_fields() -> list[str]:
    return [f for f, kind in EDITS.items() if kind == "immutable"]


def _unchanged(field: str) -> str:
    new, old = f"self.spec.{field}", f"oldSelf.spec.{field}"
    if field in _REQUIRED:
        return f"{new} == {old}"
    parent, _, leaf = field.rpartition(".")
    holder = f".spec.{parent}" if parent else ".spec"
    has_new, has_old = f"has(self{holder}.{leaf})", f"has(oldSelf{holder}.{leaf})"
    return f"{has_new} == {has_old} && (!{has_new} || {new} == {old})"


def edit_rules() -> list[dict[str, str]]:
    """The CEL transition rules at the AgentTask's root, one per immutable field, so the
    refusal names the field."""
    return [{"rule": f"{_NOT_STARTED} || ({_unchanged(f)})",
             "message": IMMUTABLE_MESSAGE,
             "fieldPath": f".spec.{f}",
             "reason": "FieldValueForbidden"}
            for f in immutable_fields()]
