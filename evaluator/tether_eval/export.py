"""``tether eval export``: a policy's failing cases as AgentTasks that ``tether run`` runs again.

Each failing sample (a ``fail`` or ``judge_failed`` verdict) becomes one AgentTask YAML: the
template's spec (agent, model, tools, limits: how the cases should run now) with the case's own
task — its instructions and inputs as the evaluator stored them, redacted — and labels naming
where it came from. A case whose record carries no instructions (a failed redaction, no record)
cannot be run again and is listed as skipped. Every document is checked by the AgentTask model
before it is written (the same check ``tether run`` makes).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tether_api import parse_agenttask

__all__ = ["cases"]

_NAME = re.compile(r"[^a-z0-9-]+")


def _name(task: str, uid: str) -> str:
    base = _NAME.sub("-", task.lower()).strip("-")[:40] or "case"
    return f"{base}-{_NAME.sub('', uid.lower())[:8]}"


def cases(failing: list[dict[str, Any]], template: dict[str, Any], policy: str
          ) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """``([(file name, AgentTask document)], [skipped case with why])``."""
    made, skipped = [], []
    for case in failing:
        if not case.get("instructions"):
            skipped.append({"uid": case["uid"], "task": case["task"],
                            "why": "the record carries no instructions (not redacted, or none "
                            "was sent)"})
            continue
        doc = copy.deepcopy(template)
        name = _name(case["task"], case["uid"])
        meta = doc.setdefault("metadata", {})
        meta["name"] = name
        meta.pop("namespace", None)
        meta["labels"] = {**(meta.get("labels") or {}), "tether.dev/eval-policy": policy,
                          "tether.dev/eval-verdict": case["verdict"]}
        meta["annotations"] = {**(meta.get("annotations") or {}),
                               "tether.dev/eval-source": f"{case['namespace']}/{case['task']} "
                               f"uid {case['uid']} attempt {case['attempt']}"}
        inputs = case.get("inputs")
        doc["spec"]["task"] = {"instructions": case["instructions"],
                               "inputs": inputs if isinstance(inputs, dict) else
                               ({} if inputs is None else {"value": inputs})}
        parse_agenttask(doc, f"case {name}")  # raises InvalidAgentTask naming the field
        made.append((f"{name}.yaml", doc))
    return made, skipped
