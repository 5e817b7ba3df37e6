"""Context boundaries on the real node: the 44-step task of examples/scripts/long_task.yaml,
whose history cannot fit its context budget, run as an AgentTask uninterrupted and evicted
twice through the Eviction API. Both end with the same answer, which the scripted model
computes from the ledger entries the final request carries (most of them come back only
through the context_archive tool), and no archivable tier is summarised twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from ._tasks import Doubles, Tasks, agent_answer, agenttask, doubles, tasks
from .test_operator import Operator, crds, operator

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "operator", "tasks"]  # fixtures, used here by name

SCRIPT = Path(__file__).parents[2] / "examples" / "scripts" / "long_task.yaml"
ANSWER = "FINAL: 10 ledger entries, total 281"
BUDGET = {"maxTokens": 3000, "keepLastToolResults": 1}


def script() -> dict[str, Any]:
    """The long task, each turn slowed so the live status can catch it mid-way and an eviction
    lands with steps still to go."""
    doc: dict[str, Any] = yaml.safe_load(SCRIPT.read_text())
    for turn in doc["turns"]:
        turn["delay"] = 1.0
    return doc


def summaries(doubles: Doubles) -> list[str]:
    return [str(r["body"]["messages"][0]["content"]) for r in doubles.model_requests()
            if "Summarize the conversation" in str(r["body"]["messages"][0]["content"])]


def reached(attempt: int, step: int) -> Callable[[dict[str, Any]], bool]:
    """The attempt's own pod is running (the status names it) and has checkpointed ``step``."""
    def pred(status: dict[str, Any]) -> bool:
        return bool(str(status.get("podName")).endswith(f"-a{attempt}")
                    and (status.get("step") or 0) >= step)
    return pred


def evict(core: client.CoreV1Api, namespace: str, pod: str) -> None:
    core.create_namespaced_pod_eviction(pod, namespace, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=pod, namespace=namespace)))


def test_long_task_evicted_twice_gives_the_uninterrupted_answer(
        operator: Operator, tasks: Tasks, doubles: Doubles, core: client.CoreV1Api,
        namespace: str) -> None:
    doubles.use(script())
    tasks.create(agenttask("ctx-base", doubles, contextBudget=BUDGET))
    base = tasks.done("ctx-base", timeout=300)["status"]
    assert base["phase"] == "Succeeded", base
    assert agent_answer(core, namespace, base["podName"]) == ANSWER
    bought = summaries(doubles)
    assert len(bought) >= 3 and len(set(bought)) == len(bought)  # several compactions

    doubles.use(script())
    tasks.create(agenttask("ctx-evicted", doubles, contextBudget=BUDGET))
    for attempt, step in ((1, 5), (2, 20)):
        running = tasks.wait("ctx-evicted", reached(attempt, step), timeout=300)["status"]
        evict(core, namespace, running["podName"])
    st = tasks.done("ctx-evicted", timeout=300)["status"]
    assert st["phase"] == "Succeeded", st
    assert st["evictions"] == 2 and st["attempt"] == 3
    assert agent_answer(core, namespace, st["podName"]) == ANSWER
    again = summaries(doubles)
    assert len(again) >= 3 and len(set(again)) == len(again)  # none bought twice
