"""The $800 incident, replayed (issue #11, item 2): both arms, their events and their bills.

The founding incident: a tool answering malformed bodies, an agent loop asking the model again
after every error with no backoff, and a cost control that was only an alert — $800 in 40
minutes. Here the same loop (tests/bench/_incident_agent.py) runs against the same doubles
(tests/bench/_incident_doubles.py) twice:

* **with tether**: ``tether run``'s LocalRun (the sidecar and the agent as local processes, the
  AgentTask's defaults; its ops port fixed so Prometheus can be told where to scrape), a soft and
  a hard limit, Prometheus scraping the sidecar's ops port with the chart's alert rules (rendered
  by helm) and Alertmanager posting to a webhook receiver here. The run is watched every 0.1 s:
  the sidecar's /status and Prometheus's alerts; the receiver asks the sidecar for its /status at
  the moment each notification arrives.
* **without tether**: the agent straight to the model and the tool, bounded by the test
  (``direct_seconds``); its spend rate, measured on the provider's bill, projected to 40 minutes.

Figures are in USD and seconds since the arm's agent started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tether_cli.run import EXIT_BUDGET, EXIT_FAILED, EXIT_OK, LocalRun

from .._obs import alertmanager, free_port, prometheus
from ._incident_doubles import Doubles, doubles
from ._incident_obs import HARD_ALERT, SOFT_ALERT, alert, chart_rules, epoch, receiver

__all__ = ["AGENT", "Scenario", "direct_arm", "tether_arm"]

AGENT = Path(__file__).with_name("_incident_agent.py")
INCIDENT_MINUTES = 40
RUN_BOUND_S = 1800.0  # no arm may run longer than this, whatever the scenario says


@dataclass(frozen=True)
class Scenario:
    """What is replayed. The defaults are the benchmark's: gpt-4o (genai-prices: $2.50 in,
    $10 out per million tokens, no prompt caching assumed), a 40,000-token prompt (system prompt
    and retrieved documents) and 1.2 s per model call, about what gpt-4o takes to read that
    prompt (~0.9 s to the first token) and write a 30-token tool call. A normal run of this
    task takes ~15 model calls (~$1.55). The team is warned at about 3 times that (soft $5) and
    stops the task at about 6 times (hard $10): room for a slow but legitimate run to finish,
    and a runaway costs ten dollars, not hundreds."""

    model: str = "gpt-4o"
    prompt_tokens: int = 40_000
    latency_s: float = 1.2
    soft_usd: str = "5.00"
    hard_usd: str = "10.00"
    direct_seconds: float = 60.0
    durations: dict[str, str] = field(default_factory=dict)  # chart rule durations overridden


def task_doc(sc: Scenario, d: Doubles) -> dict[str, Any]:
    """The AgentTask: everything but the limits, the model and the tool is the default."""
    return {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": "incident-replay", "namespace": "payments"},
        "spec": {
            "agent": {"image": "tether/agent:dev", "command": ["python", str(AGENT)],
                      "env": [{"name": "INCIDENT_PROMPT_TOKENS",
                               "value": str(sc.prompt_tokens)}]},
            "task": {"instructions": "Find why payment pay_4411 was charged twice."},
            "model": {"provider": "openai", "name": sc.model, "baseURL": d.model_url + "/v1",
                      "allowPlaintextHTTP": True},
            "tools": [{"name": "lookup", "url": d.tool_url}],
            "costEnvelope": {"softLimitUSD": sc.soft_usd, "hardLimitUSD": sc.hard_usd},
        },
    }


@dataclass
class Watch:
    """What the 0.1 s poll saw first, in seconds since the epoch."""

    soft_seen: float | None = None  # the sidecar's /status counts a soft-limit hit
    tripped: float | None = None  # its phase is BudgetExceeded (the first refused call)
    pending: dict[str, float] = field(default_factory=dict)  # alert -> Prometheus activeAt
    firing: dict[str, float] = field(default_factory=dict)  # alert -> first poll seeing it fire
    notified_hard: float | None = None  # the hard-limit alert at the receiver, if it got there

    def poll(self, run: LocalRun, prom: str) -> None:
        # Each time is taken once its answer is in: an upper bound of when the state began.
        status = run.status()
        if status is not None:
            now = time.time()
            if self.soft_seen is None and status["limitHits"]["soft"]:
                self.soft_seen = now
            if self.tripped is None and status["phase"] == "BudgetExceeded":
                self.tripped = now
        for name in (SOFT_ALERT, HARD_ALERT):
            found, now = alert(prom, name), time.time()
            if found is not None and name not in self.pending:
                self.pending[name] = epoch(found["activeAt"])
            if found is not None and found["state"] == "firing" and name not in self.firing:
                self.firing[name] = now


def tether_arm(sc: Scenario, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "chart-rules.yaml"
    chart_rules(rules, sc.durations)
    ops_port, watch = free_port(), Watch()
    with doubles(sc.model, sc.latency_s) as d:
        task = workdir / "agenttask.yaml"
        task.write_text(yaml.safe_dump(task_doc(sc, d)))
        run = LocalRun(task, workdir / "state", sidecar_args=("--ops-port", str(ops_port)))
        with (receiver(probe=run.status) as rec, alertmanager(workdir, rec.url) as am,
              prometheus(workdir, [f"127.0.0.1:{ops_port}"], [rules], am) as prom):
            run.start()
            assert run.agent is not None
            start = time.time()
            try:
                while run.agent.poll() is None and time.time() - start < RUN_BOUND_S:
                    watch.poll(run, prom)
                    time.sleep(0.1)  # the poll's period, not a wait for an outcome
            finally:  # a failed poll must not leave the agent and the sidecar running
                stopped = time.time()
                if run.agent.poll() is None:
                    run.agent.kill()
                status = run.finish(run.agent.wait())
            # After the stop only for the timeline: a late notification is a failed order.
            late = stopped + 30
            while rec.first(SOFT_ALERT) is None and time.time() < late:
                time.sleep(0.1)  # the poll's period
        notified, hard = rec.first(SOFT_ALERT), rec.first(HARD_ALERT)
        watch.notified_hard = hard.at if hard else None
        return _tether_figures(sc, d, run, status, watch, notified, start, stopped)


def _tether_figures(sc: Scenario, d: Doubles, run: LocalRun, status: dict[str, Any],
                    watch: Watch, notified: Any, start: float, stopped: float
                    ) -> dict[str, Any]:
    def since(t: float | None) -> float | None:
        return None if t is None else round(t - start, 2)

    billed = d.billed()
    curve, total, crossed = [], Decimal(0), None
    for at, cost, _ in billed:
        total += cost
        curve.append((since(at), float(total)))
        if crossed is None and total >= Decimal(sc.soft_usd):
            crossed = at
    ckpts = sorted((run.state_dir / "checkpoints").glob("ckpt-*.json"))
    last = json.loads(ckpts[-1].read_bytes().split(b"\n", 1)[1]) if ckpts else None
    agent = _agent_counts(run.state_dir / "agent.out")
    exit_code = {"Succeeded": EXIT_OK, "BudgetExceeded": EXIT_BUDGET}.get(status["phase"],
                                                                          EXIT_FAILED)
    return {
        "softLimitUSD": sc.soft_usd, "hardLimitUSD": sc.hard_usd,
        "timeline": {
            "softLimitCrossed": since(crossed), "sidecarSawSoft": since(watch.soft_seen),
            "alertPending": since(watch.pending.get(SOFT_ALERT)),
            "alertFiring": since(watch.firing.get(SOFT_ALERT)),
            "receiverNotified": since(notified.at if notified else None),
            "hardStop": since(watch.tripped), "agentExited": since(stopped),
            "hardAlertFiring": since(watch.firing.get(HARD_ALERT)),
            "hardAlertNotified": since(watch.notified_hard),
        },
        "atNotification": notified.probe and {k: notified.probe[k] for k in (
            "phase", "spentUSD", "limitHits")} if notified else None,
        "phase": status["phase"], "exitCode": exit_code, "statusSpentUSD": status["spentUSD"],
        "lastCheckpointStep": last["step"] if last else None, "checkpoints": len(ckpts),
        "agent": agent, "toolHits": d.tool_hits(),
        "attemptsPerToolCall": d.tool_hits() / agent["toolCalls"] if agent["toolCalls"] else None,
        "modelCallsBilled": len(billed), "billUSD": str(d.bill()),
        "oneHoldUSD": str(d.one_hold()), "spend": curve,
    }


def _agent_counts(out: Path) -> dict[str, Any]:
    lines = [ln for ln in out.read_text(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"the incident agent printed no summary in {out}")
    counts: dict[str, Any] = json.loads(lines[-1])
    return counts


def direct_arm(sc: Scenario, workdir: Path) -> dict[str, Any]:
    """The same loop straight to the provider and the tool, stopped after direct_seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    with doubles(sc.model, sc.latency_s) as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env.update(OPENAI_BASE_URL=d.model_url + "/v1", OPENAI_API_KEY="sk-direct-to-provider",
                   INCIDENT_TOOL_URL=d.tool_url, INCIDENT_MAX_SECONDS=str(sc.direct_seconds),
                   INCIDENT_PROMPT_TOKENS=str(sc.prompt_tokens), INCIDENT_MODEL=sc.model)
        start = time.time()
        with (workdir / "agent.log").open("wb") as log, (workdir / "agent.out").open("wb") as out:
            done = subprocess.run([sys.executable, str(AGENT)], stdout=out, stderr=log, env=env,
                                  timeout=sc.direct_seconds + 120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the direct arm's agent exited {done.returncode}: see "
                               f"{workdir / 'agent.log'}")
        billed = d.billed()
        agent = _agent_counts(workdir / "agent.out")
        curve, total = [], Decimal(0)
        for at, cost, _ in billed:
            total += cost
            curve.append((round(at - start, 2), float(total)))
        if len(billed) < 2:
            raise RuntimeError(f"the direct arm made {len(billed)} model calls in "
                               f"{sc.direct_seconds} s: too few to measure a rate")
        # The rate between the first and the last answer: the loop's own pace, not the
        # interpreter's start-up before its first call.
        elapsed = billed[-1][0] - billed[0][0]
        rate = float(total - billed[0][1]) / elapsed
        return {
            "boundSeconds": sc.direct_seconds, "rateWindowSeconds": round(elapsed, 2),
            "modelCallsBilled": len(billed), "agent": agent, "toolHits": d.tool_hits(),
            "attemptsPerToolCall": (d.tool_hits() / agent["toolCalls"]
                                    if agent["toolCalls"] else None),
            "billUSD": str(total), "usdPerMinute": round(rate * 60, 3),
            "projected40MinUSD": round(rate * 60 * INCIDENT_MINUTES, 2), "spend": curve,
        }
