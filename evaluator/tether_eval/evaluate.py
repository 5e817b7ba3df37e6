"""The judging loop: lease queued records, judge them, apply verdicts with the detector.

One loop per evaluator, ``concurrency`` judgements at a time. A judgement is exactly-once across
kills (:mod:`store`): leased, each call journalled, the verdict and the detector's step one
transaction. When a judge's daily cap leaves no room, its policies' rows stay queued (their lease
released), ``tether_eval_judge_cap_reached`` is 1, and the loop skips them until the UTC day
changes or the Judge's cap is raised (:mod:`caps`). Before each batch, stored records a policy
new to the evaluator selects are queued for it (:mod:`backfill`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from tether_api import parse_duration
from tether_api.sampling import stratum

from .anchors import AnchorsError, AnchorSource, check_of, judge_anchors, parse_anchors
from .backfill import reason, since, triggers
from .caps import JudgeCaps
from .config import EvalConfig, Policy, rubric_hash
from .detect import Cusum, DetectorStateError
from .judge import CapReached, JudgeClient, vote
from .metrics import EvalMetrics
from .stats import anchors_moved, attribute, wilson
from .status import PolicyFacts
from .store import Claim, Store, VerdictRow

__all__ = ["Evaluator", "material", "utc_day"]

log = logging.getLogger(__name__)


def utc_day() -> str:
    return datetime.now(UTC).date().isoformat()


def material(rec: dict[str, Any]) -> dict[str, Any]:
    """What the judge sees of a record: the redacted task and answer and the harness's facts."""
    det = rec.get("deterministic") or {}
    return {"instructions": rec.get("instructions"), "inputs": rec.get("inputs"),
            "answer": rec.get("answer"), "outcome": rec["outcome"],
            "checks": [{"name": c["name"], "passed": c["passed"]} for c in det.get("checks", [])]}


class Evaluator:
    def __init__(self, store: Store, config: EvalConfig, judges: dict[str, JudgeClient],
                 metrics: EvalMetrics, owner: str, concurrency: int = 4,
                 lease_seconds: float = 120.0, idle_seconds: float = 5.0,
                 namespace: str | None = None, backfill_seconds: float = 86400.0) -> None:
        self.store, self.config, self.judges, self.metrics = store, config, judges, metrics
        self.owner, self.concurrency = owner, concurrency
        self.lease, self.idle = lease_seconds, idle_seconds
        self.namespace = namespace  # the cluster namespace read (its Judges), else None
        self.backfill_seconds = backfill_seconds
        self.wake = asyncio.Event()  # set by ingest when a record is queued
        self.caps = JudgeCaps(metrics)
        self.capped = self.caps.capped  # judge -> (UTC day capped, namespace)
        self.caps.learn(config, namespace)
        # Policies whose stored records are looked at before the next batch: all at start
        # (a kill between reading a policy and queueing its records loses nothing).
        self.due: set[str] = set(config.policies)
        self.anchor_source: AnchorSource | None = None  # set by the service
        self.anchor_problems: dict[str, str] = {}  # policy -> why its anchors cannot be read

    async def run(self) -> None:
        freed = await self.store.release_own(self.owner)
        if freed:
            log.info("Took back %d leased judgements of instance %s", freed, self.owner)
        for name, policy in self.config.policies.items():  # the gauges, from what is stored
            await self.refresh(name, policy.namespace)
        while True:
            leased = await self.step()
            # Between batches, so a busy queue does not starve the anchors (one read per
            # policy with anchors when none is due).
            await self.anchor_step()
            if not leased:
                self.wake.clear()
                # Woken by a new record; else re-check for leases run out and a new day.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.idle)

    def reconfigured(self, old: EvalConfig, config: EvalConfig,
                     judges: dict[str, JudgeClient], changed: list[str]) -> None:
        """Judge by ``config`` and ``judges`` from now on; ``changed``: the judges whose spec
        changed (a capped one's cap is looked at again)."""
        self.config, self.judges = config, judges
        self.due |= set(triggers(old.policies, config.policies))
        for judge in changed:
            self.caps.changed(judge)
        self.caps.learn(config, self.namespace)
        self.wake.set()

    async def take_up(self) -> int:
        """Queue the stored records each due policy selects and was never queued for
        (:mod:`backfill`); returns how many."""
        queued = 0
        for name in sorted(self.due):
            policy = self.config.policies.get(name)
            if policy is not None:
                n = await self.store.queue_unqueued(
                    name, since(policy, self.backfill_seconds), partial(reason, name, policy))
                if n:
                    log.info("Queued %d stored record(s) for policy %s, which the evaluator "
                             "did not know (or sampled otherwise) when they arrived", n, name)
                queued += n
            self.due.discard(name)
        return queued

    async def step(self) -> int:
        """Lease and judge one batch; returns how many were leased."""
        day = utc_day()
        self.caps.new_day(day)
        await self.caps.look_again(self.judges, self.store)
        await self.take_up()
        # Only policies configured now (a removed one's rows wait, unjudged), and not those
        # of a judge at its daily cap.
        open_ = [p for p, pol in self.config.policies.items()
                 if pol.judge in self.judges and pol.judge not in self.capped]
        claims = await self.store.claim(self.owner, time.time(), self.lease, self.concurrency,
                                        open_)
        if claims:
            async with asyncio.TaskGroup() as tg:
                for c in claims:
                    tg.create_task(self.judge_one(c, day))
        return len(claims)

    async def judge_one(self, claim: Claim, day: str) -> None:
        policy = self.config.policies[claim.policy]
        client = self.judges[policy.judge]
        rubric = self.config.rubrics[policy.rubric]
        await client.new_day(day)
        on_cost = self.metrics.judge_cost.labels(policy.namespace, policy.judge).inc
        key = claim.key
        answers = []
        try:
            for i in range(client.spec.samples):
                body = client.body(rubric, material(claim.body), i)
                answers.append(await client.sample(key, i, body, on_cost))
        except CapReached as exc:
            log.warning("Judging paused for judge %s until the next UTC day or a raised "
                        "perDayUSD: %s", policy.judge, exc)
            self.caps.cap(policy.judge, policy.namespace, day, exc.hold)
            await self.store.unlease(key)
            return
        row = vote(answers, rubric, rubric_hash(rubric), policy.judge, claim.why)
        await self.apply(claim, policy, row)

    async def apply(self, claim: Claim, policy: Policy, row: VerdictRow) -> None:
        labels = claim.body.get("labels") or {}
        # Evidence for the detector: a verdict on a task of the random sample. A failed
        # judgement says nothing either way; included failed/retried tasks are not the sample.
        evidence = row.verdict != "judge_failed" and claim.why == "sampled"
        feed = evidence and policy.spec.detector is not None
        update = _detector_step(claim.policy, policy, row) if feed else None
        alarm = await self.store.apply(claim, claim.body["namespace"],
                                       stratum(labels, policy.spec.sampling.stratify_by), row,
                                       update)
        ns = claim.body["namespace"]
        self.metrics.samples.labels(ns, claim.policy, row.verdict).inc()
        if alarm:
            # Whose drift: the judge's when the anchors moved down, else the agent's.
            cause = attribute(True, check_of(await self.store.anchor_runs(claim.policy)))
            for kind in {"judge": ["judge"], "both": ["agent", "judge"]}.get(cause, ["agent"]):
                self.metrics.alarms.labels(ns, claim.policy, kind).inc()
            log.warning("Change alarm on policy %s: the judged pass rate dropped below its "
                        "baseline; attributed to: %s", claim.policy, cause)
        await self.refresh(claim.policy, ns)

    async def anchor_step(self, now: datetime | None = None) -> int:
        """Re-judge the anchor set of each policy whose last run is ``anchors.every`` old or
        that has none; returns how many sets were judged."""
        now = now or datetime.now(UTC)
        ran = 0
        for name, policy in list(self.config.policies.items()):
            spec = policy.spec.anchors
            if (spec is None or self.anchor_source is None or policy.judge not in self.judges
                    or policy.judge in self.capped):
                continue
            runs = await self.store.anchor_runs(name)
            every = timedelta(seconds=parse_duration(spec.every))
            if runs and now - datetime.fromisoformat(runs[-1][0]) < every:
                continue
            ran += await self.run_anchors(name, policy, now)
        return ran

    async def run_anchors(self, name: str, policy: Policy, now: datetime) -> bool:
        """One anchor run: judged, stored, the gauge set; a move counted as a judge alarm."""
        assert self.anchor_source is not None
        try:
            anchors = parse_anchors(await self.anchor_source(policy), f"anchors of policy {name}")
        except AnchorsError as exc:
            log.warning("Anchors of policy %s not judged: %s", name, exc)
            self.anchor_problems[name] = str(exc)
            return False
        self.anchor_problems.pop(name, None)
        client, rubric = self.judges[policy.judge], self.config.rubrics[policy.rubric]
        await client.new_day(utc_day())
        on_cost = self.metrics.judge_cost.labels(policy.namespace, policy.judge).inc
        try:
            run = await judge_anchors(client, rubric, rubric_hash(rubric), name, anchors,
                                      now.isoformat(), on_cost)
        except CapReached as exc:
            log.warning("Anchors of policy %s wait for judge %s's next UTC day: %s", name,
                        policy.judge, exc)
            self.caps.cap(policy.judge, policy.namespace, utc_day(), exc.hold)
            return False
        if not run.n:
            log.warning("Anchors of policy %s: every judgement failed; the run is not kept",
                        name)
            return False
        before = check_of(await self.store.anchor_runs(name))
        await self.store.add_anchor_run(name, now.isoformat(), run.passes, run.n, run.agreed)
        self.metrics.anchor_pass_rate.labels(policy.namespace, name).set(run.passes / run.n)
        after = check_of(await self.store.anchor_runs(name))
        was = before is not None and anchors_moved(before) != 0
        if attribute(False, after) == "judge" and not was:
            self.metrics.alarms.labels(policy.namespace, name, "judge").inc()
            log.warning("Judge drift on policy %s: its anchors passed %d of %d, against %d of %d "
                        "at first", name, run.passes, run.n, after.baseline_passes if after else 0,
                        after.baseline_n if after else 0)
        return True

    async def facts(self, name: str) -> PolicyFacts:
        """What the policy's status is computed from (:mod:`status`)."""
        policy = self.config.policies[name]
        counts = await self.store.counts(name)
        state, alarms = await self.store.detector(name)
        cusum = None
        if state is not None:
            try:
                cusum = Cusum.from_dict(json.loads(state))
            except DetectorStateError as exc:
                log.warning("Detector state of policy %s unreadable: %s", name, exc)
        return PolicyFacts(
            records=counts["records"], redaction_failures=counts["redaction_failures"],
            samples=counts["samples"], tally=await self.store.tally(name), cusum=cusum,
            alarms=alarms, judge=policy.judge,
            judge_spent_today=await self.store.spent(policy.judge, utc_day()),
            capped=policy.judge in self.capped, anchored=policy.spec.anchors is not None,
            anchors=check_of(await self.store.anchor_runs(name)),
            anchor_problem=self.anchor_problems.get(name))

    async def refresh(self, name: str, namespace: str) -> None:
        """The policy's gauges from the store (pass rate and its Wilson bounds, score, CUSUM)."""
        t = await self.store.tally(name)
        n = t.passed + t.failed
        rate = wilson(t.passed, n)
        for bound, value in (("point", rate.point), ("lower", rate.lower),
                             ("upper", rate.upper)):
            self.metrics.pass_rate.labels(namespace, name, bound).set(value)
        if n:
            self.metrics.score_mean.labels(namespace, name).set(t.score_sum / n)
        state, _ = await self.store.detector(name)
        if state is not None:
            cusum = Cusum.from_dict(json.loads(state))
            self.metrics.cusum.labels(namespace, name).set(cusum.statistic_nats)
            self.metrics.cusum_threshold.labels(namespace, name).set(
                cusum.design.threshold_nats)


def _detector_step(name: str, policy: Policy, row: VerdictRow
                   ) -> Callable[[str | None], tuple[str, bool]]:
    """The detector's step for one verdict, run inside the store's transaction."""
    d = policy.spec.detector
    assert d is not None

    def fresh() -> Cusum:
        return Cusum.for_params(float(d.baseline_pass_rate), float(d.shift), d.false_alarm_every)

    def step(old: str | None) -> tuple[str, bool]:
        cusum = fresh()
        if old is not None:
            try:
                cusum = Cusum.from_dict(json.loads(old))
            except DetectorStateError as exc:
                log.warning("Restarted the detector of policy %s: %s", name, exc)
        if (cusum.design.baseline, cusum.design.shift, cusum.design.false_alarm_every) != (
                float(d.baseline_pass_rate), float(d.shift), d.false_alarm_every):
            cusum = fresh()  # the policy's detector settings changed: evidence starts afresh
        alarm = cusum.update(row.verdict == "pass")
        return json.dumps(cusum.to_dict()), alarm
    return step
