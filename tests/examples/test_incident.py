"""The founding incident, replayed (issue #11, item 2): an agent loop that asks the model again
after every tool error, with no backoff, against a tool that only answers malformed bodies.

Under tether (``tether run``'s LocalRun, the AgentTask's defaults, a soft and a hard limit;
real Prometheus scraping the sidecar's ops port with the chart's rules as helm renders them, real
Alertmanager posting to a receiver here): each tool call reaches the tool once (malformed is not
retried by default); the soft-limit alert fires in Prometheus and reaches the receiver while the
task still runs; the task ends BudgetExceeded with its last step checkpointed; the provider's
bill stays within the hard limit plus one call's hold. Without tether the same loop only stops
when the test stops it, and its measured rate runs far past the hard limit in 40 minutes.

Order of events and money only, no wall-clock bound: the scenario is the benchmark's
(tests/bench/incident.py) with 0.2 s model calls and lower limits, so it runs in ~20 s.
Needs prometheus, alertmanager and helm (the make targets pass them; see docs/observability.md).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.bench._incident import Scenario, direct_arm, tether_arm

# Soft at $1 (~10 calls of $0.10), hard at $5: the alert path (1 s scrape, 1 s evaluation,
# Alertmanager) has ~40 calls to arrive in before the stop.
SCENARIO = Scenario(latency_s=0.2, soft_usd="1.00", hard_usd="5.00", direct_seconds=5.0)


@pytest.fixture(scope="module")
def tethered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return tether_arm(SCENARIO, tmp_path_factory.mktemp("incident-tether"))


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return direct_arm(SCENARIO, tmp_path_factory.mktemp("incident-direct"))


def test_each_tool_call_reaches_the_malformed_tool_once(tethered: dict[str, Any]) -> None:
    agent = tethered["agent"]
    assert agent["toolCalls"] >= 10
    assert agent["toolErrors"] == agent["toolCalls"]  # every answer was malformed
    assert tethered["toolHits"] == agent["toolCalls"]  # attempts per call: 1, not maxAttempts


def test_the_soft_limit_alert_reaches_the_receiver_before_the_stop(
        tethered: dict[str, Any]) -> None:
    t = tethered["timeline"]
    assert t["alertFiring"] is not None, "Prometheus never fired TetherTaskSoftLimitReached"
    assert t["receiverNotified"] is not None, "the receiver never got TetherTaskSoftLimitReached"
    # What the sidecar said at the moment the notification arrived: still running, soft passed.
    at = tethered["atNotification"]
    assert at["phase"] == "Running" and at["limitHits"]["hard"] == 0
    assert at["limitHits"]["soft"] == 1
    assert Decimal(SCENARIO.soft_usd) <= Decimal(at["spentUSD"]) < Decimal(SCENARIO.hard_usd)
    assert t["softLimitCrossed"] <= t["receiverNotified"] < t["hardStop"] <= t["agentExited"]


def test_the_task_ends_budget_exceeded_with_its_last_step_checkpointed(
        tethered: dict[str, Any]) -> None:
    assert tethered["phase"] == "BudgetExceeded"
    assert tethered["exitCode"] == 3  # tether run's exit code for BudgetExceeded
    assert tethered["agent"]["stoppedBy"] == "hard limit (402)"
    assert tethered["lastCheckpointStep"] == tethered["agent"]["modelCalls"]


def test_the_providers_bill_stays_within_the_hard_limit_and_one_hold(
        tethered: dict[str, Any]) -> None:
    bill, hard = Decimal(tethered["billUSD"]), Decimal(SCENARIO.hard_usd)
    assert bill <= hard + Decimal(tethered["oneHoldUSD"])
    assert bill >= Decimal(SCENARIO.soft_usd)  # it did spend: the stop was the hard limit's
    assert Decimal(tethered["statusSpentUSD"]) == bill  # the sidecar's ledger is the bill


def test_without_tether_the_loop_runs_until_the_test_stops_it(
        direct: dict[str, Any], tethered: dict[str, Any]) -> None:
    agent = direct["agent"]
    assert agent["stoppedBy"] == "cap" and agent["modelCalls"] == direct["modelCallsBilled"]
    assert agent["toolErrors"] == agent["toolCalls"] == direct["toolHits"]
    # Per model call the two arms cost the same; only tether stops spending.
    per_call = Decimal(direct["billUSD"]) / direct["modelCallsBilled"]
    assert per_call == pytest.approx(Decimal(tethered["billUSD"])
                                     / tethered["modelCallsBilled"], rel=Decimal("0.05"))
    assert direct["projected40MinUSD"] > 10 * float(SCENARIO.hard_usd)


def test_the_scenario_runs_the_chart_rule_not_a_copy(tmp_path: Path) -> None:
    # The rule the alert test depends on is the chart's own, as helm renders it.
    from tests.bench._incident_obs import SOFT_ALERT, chart_rules

    spec = chart_rules(tmp_path / "rules.yaml")
    [rule] = [r for g in spec["groups"] if g["name"] == "tether-tasks" for r in g["rules"]
              if r.get("alert") == SOFT_ALERT]
    assert 'tether_budget_limit_hits_total{limit="soft"}' in rule["expr"]
