"""``tether eval report``: a policy's failing samples grouped by failure pattern.

Read from the evaluator's store (the same URL it runs with), so it works against a copy of the
SQLite file or the PostgreSQL database. A pattern is the verdict (fail or judge_failed), the
deterministic checks that failed, and the judge's reason with numbers, quoted text and
redaction markers folded (``<EMAIL_ADDRESS>``, ``42``, ``"x"`` all read the same), so the same
failure worded around different values lands in one group. Reasons are shown as stored:
redacted by the evaluator before they were kept.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

__all__ = ["group", "pattern"]

_MARKER = re.compile(r"<[A-Z_]+>")  # the redactor's placeholders: folded before lower-casing
_FOLD = [(re.compile(r'"[^"]*"|\'[^\']*\''), '"…"'), (re.compile(r"\d+(?:[.,]\d+)*"), "#"),
         (re.compile(r"\s+"), " ")]


def pattern(reason: str) -> str:
    text = _MARKER.sub("<…>", reason.strip()).lower()
    for rx, repl in _FOLD:
        text = rx.sub(repl, text)
    return text[:160]


def group(failing: list[dict[str, Any]], examples: int = 3) -> list[dict[str, Any]]:
    """Groups, largest first: ``{"verdict", "failedChecks", "pattern", "count", "examples"}``
    with up to ``examples`` samples (task, uid, attempt, reason) each."""
    groups: dict[tuple[str, tuple[str, ...], str], list[dict[str, Any]]] = defaultdict(list)
    for f in failing:
        groups[(f["verdict"], tuple(f["failedChecks"]), pattern(f["reason"]))].append(f)
    out = [{"verdict": k[0], "failedChecks": list(k[1]), "pattern": k[2], "count": len(v),
            "examples": [{"task": f["task"], "uid": f["uid"], "attempt": f["attempt"],
                          "reason": f["reason"]} for f in v[:examples]]}
           for k, v in groups.items()]
    return sorted(out, key=lambda g: (-g["count"], g["verdict"], g["pattern"]))
