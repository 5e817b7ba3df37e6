"""Issue #9's spend conservation campaign on the real node: TETHER_CAMPAIGN_TASKS AgentTasks
(default 30; seed TETHER_CAMPAIGN_SEED) under three AgentBudgets, a third of them with
``checkpoint.enabled: false``, and a seeded sequence of events applied while they run: the
agent exits non-zero, the sidecar is SIGKILLed (containerd's ``ctr`` on the node), the pod is
evicted, hard and soft limits and budget limits are edited, tasks are deleted. Then every
dollar the scripted model billed is looked for in the tasks' statuses and the budgets
(``_campaign.check`` says how; the table goes to docs/benchmarks.md).

Run: ``.venv/bin/python -m pytest -s tests/e2e/test_spend_campaign.py -m node``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from tether_operator.manifests import SIDECAR

from . import _campaign
from ._campaign import Event, Observed, Plan, TaskPlan
from ._cluster import CLUSTER_DIR, Cluster
from ._tasks import GROUP, VERSION, Doubles, agenttask, doubles
from .test_operator import Operator, crds, operator

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "operator"]  # fixtures used here by name

SEED = int(os.environ.get("TETHER_CAMPAIGN_SEED", "20260930"))
COUNT = int(os.environ.get("TETHER_CAMPAIGN_TASKS", "30"))
CONCURRENCY = 6  # task pods at once: the node has 2 cores, shared
CAMPAIGN_SECONDS = 300  # the run; then at most SETTLE_SECONDS for the budgets' last writes
SETTLE_SECONDS = 60
TERMINAL = ("Succeeded", "Failed", "BudgetExceeded")


class Watcher(threading.Thread):
    """Every AgentTask status the apiserver sends (list, then watch), in order: the spend
    series (invariant 3), the last status of every task, deleted ones included."""

    def __init__(self, custom: client.CustomObjectsApi, ns: str, seen: Observed) -> None:
        super().__init__(daemon=True, name="campaign-watch")
        self.custom, self.ns, self.seen = custom, ns, seen
        self.objects: dict[str, dict[str, Any]] = {}
        self.gone: set[str] = set()
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.list_then_watch()
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError, KeyError) as exc:
            self.error = exc  # the test thread asserts on it at its next round
            with self.changed:
                self.changed.notify_all()

    def list_then_watch(self) -> None:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks")
        for obj in listed["items"]:
            self.record("LISTED", obj)
        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, "agenttasks",
            resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=5)
        try:
            for event in stream:
                self.record(event["type"], event["object"])
        except client.ApiException as exc:
            if exc.status != 410:  # 410: the version expired; list again
                raise

    def record(self, kind: str, obj: dict[str, Any]) -> None:
        name, st = obj["metadata"]["name"], obj.get("status") or {}
        series = self.seen.spent_series.setdefault(name, [])
        spent = Decimal(str(st.get("spentUSD") or 0))
        if not series or series[-1] != spent:
            series.append(spent)
        if st.get("reservedUSD") is not None:
            self.seen.reserved_max[name] = max(self.seen.reserved_max.get(name, Decimal(0)),
                                               Decimal(str(st["reservedUSD"])))
        self.seen.final[name] = st
        edit = self.seen.edited.get(name)
        if edit and name not in self.seen.enforced_after and st.get("phase") == "Running" \
                and Decimal(str(st.get("hardLimitUSD") or -1)) == edit[1]:  # by the sidecar
            self.seen.enforced_after[name] = time.monotonic() - edit[0]
            if spent > edit[1]:  # the old limit was in force until now: spent under it
                self.seen.lowered_at[name] = max(self.seen.lowered_at.get(name, spent), spent)
        self.seen.hard_final[name] = Decimal(obj["spec"]["costEnvelope"]["hardLimitUSD"])
        self.objects[name] = obj
        if kind == "DELETED":
            self.gone.add(name)
            self.seen.deleted.add(name)
        with self.changed:
            self.changed.notify_all()


class Campaign:
    """Creates the plan's tasks (at most CONCURRENCY running) and applies its events."""

    def __init__(self, plan: Plan, api: client.ApiClient, ns: str, doubles: Doubles,
                 cluster: Cluster, watcher: Watcher) -> None:
        self.plan, self.ns, self.doubles, self.cluster, self.w = plan, ns, doubles, cluster, watcher
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.seen = watcher.seen
        self.todo = {p.name: list(p.events) for p in plan.tasks}
        self.pending = list(plan.tasks)
        self.edits = list(plan.budget_edits)
        self.created: list[str] = []
        self.exited: set[str] = set()

    def body(self, p: TaskPlan) -> dict[str, Any]:
        body = agenttask(p.name, self.doubles, hard=f"{p.hard}",
                         labels={"team": p.team} if p.team else {})
        spec = body["spec"]
        spec["task"] = {"instructions": p.instructions}
        # The doubles speak plain HTTP on the host (allowed explicitly, issue #9).
        spec["model"] = {**spec["model"], "allowPlaintextHTTP": True, "pricing": {
            "inputPerMTok": f"{p.price_in:.2f}", "outputPerMTok": f"{p.price_out:.2f}"}}
        spec["tools"] = [t for t in spec["tools"] if t["name"] == "search"]
        spec["checkpoint"] = {**spec["checkpoint"], "enabled": p.checkpoint}
        spec["retryPolicy"] = {**spec["retryPolicy"], "pod": {"backoffLimit": 2}}
        if p.exit_at:
            spec["agent"]["env"] = [{"name": "AGENT_EXIT_AT_STEP", "value": str(p.exit_at)}]
        return body

    def active(self) -> list[str]:
        """Created tasks not yet ended (the watch may not have shown a new one yet)."""
        objects = dict(self.w.objects)
        return [n for n in self.created if n not in self.w.gone
                and ((objects.get(n) or {}).get("status") or {}).get("phase") not in TERMINAL]

    def round(self) -> bool:
        """One pass: create, edit budgets, apply due events. True once everything ended."""
        running = self.active()
        while self.pending and len(running) < CONCURRENCY:
            p = self.pending.pop(0)
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks",
                                                        self.body(p))
            running.append(p.name)
            self.created.append(p.name)
        while self.edits and len(self.created) >= self.edits[0][0]:
            self.edit_budget(*self.edits.pop(0)[1:])
        for p in self.plan.tasks:
            self.due(p)
        return not self.pending and not running

    def due(self, p: TaskPlan) -> None:
        obj = self.w.objects.get(p.name)
        if obj is None:
            return
        st, events = obj.get("status") or {}, self.todo[p.name]
        if p.exit_at and (st.get("step") or 0) >= p.exit_at and p.name not in self.exited:
            self.seen.applied["agent-exit"] += 1  # it exits right after checkpointing that step
            self.exited.add(p.name)
        if not events:
            return
        if p.name in self.w.gone or st.get("phase") in TERMINAL:
            for e in events:
                self.seen.skipped[e.kind] += 1
            events.clear()
            return
        e = events[0]
        if st.get("phase") == "Running" and (st.get("step") or 0) >= e.at_step \
                and self.apply(p, e, obj):
            self.seen.applied[e.kind] += 1
            events.remove(e)

    def apply(self, p: TaskPlan, e: Event, obj: dict[str, Any]) -> bool:
        """Apply one event; False when its moment has not come (no running pod yet)."""
        pod = self.running_pod((obj.get("status") or {}).get("podName"))
        if e.kind in ("sidecar-kill", "evict") and pod is None:
            return False
        if e.kind == "sidecar-kill":
            return pod is not None and self.kill_sidecar(pod)
        if e.kind == "evict":
            assert pod is not None
            self.core.create_namespaced_pod_eviction(pod.metadata.name, self.ns, {
                "metadata": {"name": pod.metadata.name, "namespace": self.ns}})
        elif e.kind == "delete":
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks",
                                                        p.name)
        else:
            self.edit_limits(p, e, obj)
        return True

    def running_pod(self, name: str | None) -> client.V1Pod | None:
        if not name:
            return None
        try:
            pod = self.core.read_namespaced_pod(name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        ok = pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
        return pod if ok else None

    def kill_sidecar(self, pod: client.V1Pod) -> bool:
        """SIGKILL the sidecar's process through the node's containerd (ctr, the containerd
        CLI; on kind, inside the node container); the kubelet restarts it in the same pod."""
        ids = [s.container_id for s in pod.status.init_container_statuses or []
               if s.name == SIDECAR and s.state.running and s.container_id]
        if not ids:
            return False
        cid = ids[0].split("://", 1)[1]
        node = ["ctr", "-a", str(CLUSTER_DIR / "run" / "containerd" / "containerd.sock")] \
            if self.cluster.local else ["docker", "exec", pod.spec.node_name, "ctr"]
        done = subprocess.run([*node, "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", cid],
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0 and "not found" in done.stderr:
            return False  # it had just exited (the task ending): the next round looks again
        assert done.returncode == 0, (f"could not SIGKILL sidecar {cid} of pod "
                                      f"{pod.metadata.name} with {node[0]} (install the "
                                      f"containerd CLI, Debian package containerd): "
                                      f"{done.stderr}")
        return True

    def edit_limits(self, p: TaskPlan, e: Event, obj: dict[str, Any]) -> None:
        envelope = obj["spec"]["costEnvelope"]
        hard = Decimal(envelope["hardLimitUSD"])
        patch: dict[str, Any] = {}
        if e.kind == "hard-edit":
            hard = (hard * e.factor).quantize(Decimal("0.0001"))
            patch["hardLimitUSD"] = f"{hard}"
            if Decimal(envelope.get("softLimitUSD") or 0) > hard:
                patch["softLimitUSD"] = f"{(hard / 2).quantize(Decimal('0.0001'))}"
            # What was really spent when the limit went down: the model's bill so far.
            billed = _campaign.bill(self.plan, self.doubles.model_requests())
            spent = max(billed.usd.get(p.name, Decimal(0)),
                        Decimal(str((obj.get("status") or {}).get("spentUSD") or 0)))
            if spent > hard:
                self.seen.lowered_at[p.name] = spent
            self.seen.edited[p.name] = (time.monotonic(), hard)
        else:
            patch["softLimitUSD"] = f"{(hard * e.factor).quantize(Decimal('0.0001'))}"
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks",
                                                   p.name, {"spec": {"costEnvelope": patch}})

    def edit_budget(self, team: str, factor: Decimal) -> None:
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "agentbudgets",
                                                       f"team-{team}")
        limit = (Decimal(got["spec"]["limitUSD"]) * factor).quantize(Decimal("0.0001"))
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "agentbudgets",
                                                   f"team-{team}",
                                                   {"spec": {"limitUSD": f"{limit}"}})
        self.seen.applied["budget-edit"] += 1


@pytest.fixture
def watcher(api: client.ApiClient, namespace: str) -> Iterator[Watcher]:
    w = Watcher(client.CustomObjectsApi(api), namespace, Observed())
    w.start()
    yield w
    w.stopping.set()
    w.join(10)  # the stream ends within its 5 s timeout


def make_budgets(custom: client.CustomObjectsApi, ns: str, plan: Plan) -> None:
    for team, limit in plan.budgets.items():
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "agentbudgets", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentBudget",
            "metadata": {"name": f"team-{team}"},
            "spec": {"selector": {"matchLabels": {"team": team}}, "period": "Daily",
                     "limitUSD": f"{limit}", "onExhausted": "Queue"}})


def settled_budgets(custom: client.CustomObjectsApi, ns: str, plan: Plan,
                    bill: _campaign.Bill) -> dict[str, dict[str, Any]]:
    """The budgets' statuses once no hold is left and each shows its tasks' bill, or as they
    are after SETTLE_SECONDS (then the invariant check names what is missing)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        got = {t: custom.get_namespaced_custom_object(GROUP, VERSION, ns, "agentbudgets",
                                                      f"team-{t}").get("status") or {}
               for t in plan.budgets}
        owed = {t: sum((bill.usd.get(p.name, Decimal(0)) for p in plan.tasks if p.team == t),
                       Decimal(0)) for t in plan.budgets}
        if time.monotonic() > deadline or all(
                not s.get("reservations") and Decimal(str(s.get("spentUSD") or 0)) >= owed[t]
                for t, s in got.items()):
            return got
        time.sleep(1)  # budgets are written on the operator's own schedule; nothing to watch


def dump(w: Watcher, core: client.CoreV1Api, ns: str) -> str:
    lines = [f"{n}: " + ", ".join(f"{k}={(o.get('status') or {}).get(k)}" for k in (
        "phase", "step", "spentUSD", "attempt", "failures", "evictions", "message"))
        + (" (deleted)" if n in w.gone else "") for n, o in sorted(w.objects.items())]
    events = core.list_namespaced_event(ns).items
    lines += [f"event {e.involved_object.kind}/{e.involved_object.name}: {e.reason}: {e.message}"
              for e in events[-60:]]
    return "\n".join(lines)


def test_spend_is_conserved_through_a_seeded_campaign(
        operator: Operator, doubles: Doubles, watcher: Watcher, api: client.ApiClient,
        core: client.CoreV1Api, cluster: Cluster, namespace: str) -> None:
    plan = _campaign.make_plan(SEED, COUNT)
    doubles.use(_campaign.script(plan))
    custom = client.CustomObjectsApi(api)
    core.patch_namespaced_secret("model-creds", namespace, {"metadata": {"labels": {
        "tether.dev/model-credentials": "true"}}})  # tasks may use it (issue #9's opt-in)
    make_budgets(custom, namespace, plan)
    run = Campaign(plan, api, namespace, doubles, cluster, watcher)
    deadline = time.monotonic() + CAMPAIGN_SECONDS
    while not run.round():
        assert watcher.error is None, f"the AgentTask watch failed: {watcher.error!r}"
        if time.monotonic() > deadline:
            pytest.fail(f"campaign (seed {SEED}) not done in {CAMPAIGN_SECONDS}s; tasks and "
                        f"events:\n{dump(watcher, core, namespace)}", pytrace=False)
        with watcher.changed:
            watcher.changed.wait(timeout=1.0)  # the next status change, or a second
    billed = _campaign.bill(plan, doubles.model_requests())
    watcher.seen.budgets = settled_budgets(custom, namespace, plan, billed)
    rows, bad = _campaign.check(plan, watcher.seen, billed)
    print(f"\nSpend conservation campaign, seed {SEED}:\n{_campaign.table(rows)}")
    assert not bad, "spend invariants broken:\n" + "\n".join(bad) + \
        f"\n\n{_campaign.table(rows)}\n\n{dump(watcher, core, namespace)}"
