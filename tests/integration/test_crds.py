"""The generated CRDs on a real kube-apiserver: accepted, explained, and guarding the spec.

Every refusal is checked on the API server's own message text: the field path and the words a
person acts on (our CEL messages, or the schema's own for ranges and required fields).
"""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether_api import AgentBudget, AgentTaskStatus, Condition, LastCheckpoint, parse_agenttask

from .conftest import REPO, Kubectl
from .invalid_tasks import BASE_TASK, INVALID_TASKS, InvalidTask, invalid_task

pytestmark = pytest.mark.cluster

SAMPLES = REPO / "crds" / "samples"


def _create(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> Any:
    # Strict field validation: an unknown field is an error, not a warning that gets pruned.
    return kubectl("-n", namespace, "create", "--validate=strict", "-f", "-",
                   stdin=yaml.safe_dump(obj))


def _get(kubectl: Kubectl, namespace: str, what: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl.ok("-n", namespace, "get", what, "-o", "json"))
    return result


def test_crds_are_structural_and_established(kubectl: Kubectl, crds: list[str]) -> None:
    for name in crds:
        crd = json.loads(kubectl.ok("get", "crd", name, "-o", "json"))
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conditions["Established"]["status"] == "True"
        assert conditions.get("NonStructuralSchema", {}).get("status") != "True", conditions
        assert conditions["NamesAccepted"]["status"] == "True"


def test_samples_are_accepted_and_read_back_by_tether_api(kubectl: Kubectl,
                                                         namespace: str) -> None:
    for sample in ("agenttask.yaml", "agentbudget.yaml"):
        kubectl.ok("-n", namespace, "create", "--validate=strict", "-f", str(SAMPLES / sample))

    # What the API server stores (with its defaults filled in) must parse as the operator and
    # sidecar will parse it.
    task = _get(kubectl, namespace, "agenttask/incident-research")
    parsed = parse_agenttask({**task, "metadata": _meta(task)})
    assert parsed.spec.retry_policy.calls.max_elapsed == "120s"  # a default the server applied
    assert task["spec"]["retryPolicy"]["calls"]["maxElapsed"] == "120s"
    budget = _get(kubectl, namespace, "agentbudget/payments-monthly")
    AgentBudget.model_validate({**budget, "metadata": _meta(budget)})

    listing = kubectl.ok("-n", namespace, "get", "at")
    assert listing.split("\n")[0].split() == ["NAME", "PHASE", "ATTEMPT", "SPENT", "LIMIT", "STEP",
                                              "AGE"]
    # Limit is the enforced limit (status.hardLimitUSD), blank until the operator applies one,
    # never the spec's 1.00 (issue #9: the column showed a limit nobody enforced).
    row = next(line for line in listing.splitlines() if line.startswith("incident-research"))
    assert "1.00" not in row, listing
    assert "payments-monthly" in kubectl.ok("-n", namespace, "get", "tether")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "namespace", "uid", "labels")
    return {k: v for k, v in obj["metadata"].items() if k in keep}


def test_status_written_by_the_operator_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    task = copy.deepcopy(BASE_TASK)
    task["metadata"]["name"] = "with-status"
    kubectl.ok("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(task))
    status = AgentTaskStatus(
        phase="Running", attempt=2, step=7, spent_usd=Decimal("0.4321"), input_tokens=1200,
        hard_limit_usd=Decimal("1.50"),
        conditions=[Condition(type="Ready", status="True", reason="PodRunning",
                              last_transition_time="2025-01-31T12:00:00Z")],
        last_checkpoint=LastCheckpoint(step=6, time="2025-01-31T12:01:00Z", sha256="a" * 64),
        trace_id="0" * 31 + "1", start_time="2025-01-31T11:59:00Z",
    )
    body = {"status": status.model_dump(by_alias=True, mode="json", exclude_none=True)}
    kubectl.ok("-n", namespace, "patch", "agenttask", "with-status", "--subresource=status",
               "--type=merge", "-p", json.dumps(body))
    row = kubectl.ok("-n", namespace, "get", "agenttask", "with-status", "--no-headers").split()
    assert row[1:6] == ["Running", "2", "0.4321", "1.50", "7"]  # Phase .. Step
    stored = _get(kubectl, namespace, "agenttask/with-status")["status"]
    assert AgentTaskStatus.model_validate(stored) == status


def test_explain_describes_the_cost_envelope(kubectl: Kubectl, crds: list[str]) -> None:
    # The published OpenAPI catches up with a new CRD a moment after it is Established.
    deadline = time.monotonic() + 60
    while True:
        out = kubectl("explain", "agenttask.spec.costEnvelope")
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "What the task may spend, in USD." in text
    assert "hardLimitUSD <string> -required-" in text
    assert "Never spend more than this many USD over the whole task" in text
    assert "enum: Stop, CheckpointAndStop" in text


@pytest.mark.parametrize("case", INVALID_TASKS, ids=[c.name for c in INVALID_TASKS])
def test_invalid_task_is_refused_with_a_message_naming_the_field(
        kubectl: Kubectl, namespace: str, case: InvalidTask) -> None:
    out = _create(kubectl, namespace, invalid_task(case))
    assert out.returncode != 0, f"the API server accepted {case.name}"
    message = out.stderr
    print(f"{case.name}: {message}")  # shown with -rP; the report quotes these
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in the API server's answer:\n{message}"
    assert kubectl("-n", namespace, "get", "agenttask", case.name).returncode != 0


BAD_BUDGETS = (
    ("soft-limit-zero", {"softLimitPercent": 0},
     ("spec.softLimitPercent", "should be greater than or equal to 1")),
    ("in-without-values",
     {"selector": {"matchExpressions": [{"key": "team", "operator": "In"}]}},
     ("spec.selector.matchExpressions[0].values",
      "operators In and NotIn need values; Exists and DoesNotExist take none")),
)


@pytest.mark.parametrize(("name", "change", "expect"), BAD_BUDGETS,
                         ids=[b[0] for b in BAD_BUDGETS])
def test_invalid_budget_is_refused(kubectl: Kubectl, namespace: str, name: str,
                                   change: dict[str, Any], expect: tuple[str, ...]) -> None:
    budget = yaml.safe_load(Path(SAMPLES / "agentbudget.yaml").read_text())
    budget["metadata"]["name"] = name
    budget["spec"].update(change)
    out = _create(kubectl, namespace, budget)
    assert out.returncode != 0, f"the API server accepted {name}"
    for fragment in expect:
        assert fragment in out.stderr, out.stderr
