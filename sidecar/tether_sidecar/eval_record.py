"""The evaluation record of one task attempt: the deterministic layer (issue #10, item 2).

Built by the sidecar when the agent answers (``PUT /result``), or at the end of an attempt that
never answered, for a task an EvaluationPolicy selects (``TETHER_EVALUATION``). What it holds
(the contract: docs/evaluation.md, "Deterministic layer"):

* the policies' checks over the answer, run on the answer itself, before redaction; a check's
  reason is built from the schema or the pattern, never from the answer's text (a jsonschema
  message quotes the value it rejects, which may be exactly what redaction would remove);
* the facts the sidecar owns: retries, tool verification failures, limit hits, spend, attempt,
  outcome (answered, budget_exceeded, no_answer);
* the answer, the task's instructions and inputs, redacted (redact.py); when redaction fails all
  three are null and ``redaction.ok`` is false: fail closed, the record still counts.

Imported only for a task a policy selects, and it imports jsonschema, regex and the redaction
engine only when a record is built: the sidecar's resident memory goal is ≤ 96 MB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson

from tether_api import usd

from .eval_config import Check, Evaluation

if TYPE_CHECKING:
    from .harness import Harness
    from .redact import Redactor

__all__ = ["Facts", "build", "facts", "run_checks"]

log = logging.getLogger(__name__)
VERSION = 1
# A user's pattern can backtrack for ever on a crafted answer; the regex module stops it.
REGEX_TIMEOUT_S = 1.0
REGEX_MAX_CHARS = 1_000_000  # longer answers are not searched: the check fails, saying why
_SHOWN = 120  # characters of a schema value shown in a reason


@dataclass(frozen=True)
class Facts:
    """What the sidecar counted during the attempt, read on the event loop at the record's time."""

    uid: str
    namespace: str
    task: str
    labels: dict[str, str]
    attempt: int
    outcome: str
    retries: int
    verification_failures: int
    soft_hits: int
    hard_hits: int
    spent_usd: str
    instructions: str
    inputs: dict[str, Any]


def facts(h: Harness, answered: bool) -> Facts:
    meta, ledger = h.task.metadata, h.ledger
    outcome = "answered" if answered else "budget_exceeded" if ledger.tripped else "no_answer"
    return Facts(uid=meta.uid or f"{meta.namespace}/{meta.name}", namespace=meta.namespace,
                 task=meta.name, labels=dict(meta.labels), attempt=h.settings.attempt,
                 outcome=outcome, retries=h.retries,
                 verification_failures=h.verification_failures, soft_hits=ledger.soft_hits,
                 hard_hits=ledger.hard_hits, spent_usd=usd(ledger.spent_usd),
                 instructions=h.task.spec.task.instructions, inputs=dict(h.task.spec.task.inputs))


def run_checks(ev: Evaluation, answer: Any, answered: bool) -> list[dict[str, Any]]:
    out = []
    for policy in ev.policies:
        for check in policy.checks:
            reason = _check(check, answer) if answered else "no answer: the task never gave one"
            out.append({"policy": policy.name, "name": check.name, "passed": reason is None,
                        "reason": reason or ""})
    return out


def _check(check: Check, answer: Any) -> str | None:
    """None when the answer passes; else why not."""
    if check.json_schema is not None:
        return _json_schema(check.json_schema, answer)
    assert check.regex is not None  # eval_config: exactly one of the two
    return _regex(check.regex, answer)


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _json_schema(schema: dict[str, Any], answer: Any) -> str | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError, best_match

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"the policy's jsonSchema is invalid: {exc.message}"
    error = best_match(Draft202012Validator(schema).iter_errors(answer))
    if error is None:
        return None
    # From the schema's side only (the message would quote the answer's value).
    return f"{error.json_path}: fails {error.validator} {_shown(error.validator_value)}"


def _regex(pattern: str, answer: Any) -> str | None:
    import regex

    text = answer if isinstance(answer, str) else orjson.dumps(answer).decode()
    if len(text) > REGEX_MAX_CHARS:
        return (f"the answer ({len(text)} characters) is longer than the {REGEX_MAX_CHARS} a "
                "regex check searches")
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        return f"the policy's regex does not compile: {exc}"
    try:
        found = compiled.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return (f"the regex search took over {REGEX_TIMEOUT_S:g} s (a pattern that backtracks "
                "on this answer): counted as a failure")
    shown = pattern if len(pattern) <= _SHOWN else pattern[:_SHOWN] + "…"
    return None if found is not None else f"no match for /{shown}/"


@cache
def _redactor() -> Redactor:
    """One per process: it owns a worker thread, and loads its engine once (redact.py)."""
    from .redact import Redactor

    return Redactor()


def _redact(answer: Any, f: Facts) -> tuple[dict[str, Any], dict[str, Any]]:
    """(redacted texts, the record's ``redaction``); fail closed: any failure nulls the texts.
    One call for the three, so the record has one size cap and one time budget."""
    from .redact import RedactionFailed

    redactor = _redactor()
    texts = {"answer": answer, "instructions": f.instructions, "inputs": f.inputs}
    try:
        redacted, findings = redactor.redact_json(texts)
    except RedactionFailed as exc:
        # Its message says why (too_large, timeout, engine_error…), never the text.
        log.error("Task %s: %s; the record leaves without answer, instructions or inputs",
                  f.task, exc)
        return _closed(redactor.engine)
    return redacted, {"ok": True, "findings": dict(findings), "engine": redactor.engine}


def _closed(engine: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The why is in the log (said once, above); the record says only that it failed."""
    return ({"answer": None, "instructions": None, "inputs": None},
            {"ok": False, "findings": {}, "engine": engine})


def build(ev: Evaluation, f: Facts, answer: Any, answered: bool) -> dict[str, Any]:
    """The record (run in a worker thread: checks and redaction are CPU work)."""
    checks = run_checks(ev, answer, answered)
    texts, redaction = _redact(answer if answered else None, f)
    return {
        "version": VERSION, "uid": f.uid, "namespace": f.namespace, "task": f.task,
        "labels": f.labels, "attempt": f.attempt,
        "policies": [{"name": p.name, "sampled": p.sampled} for p in ev.policies],
        "outcome": f.outcome, **texts, "redaction": redaction,
        "deterministic": {"checks": checks, "retries": f.retries,
                          "verificationFailures": f.verification_failures,
                          "limitHits": {"soft": f.soft_hits, "hard": f.hard_hits},
                          "spentUSD": f.spent_usd},
        "finishedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
