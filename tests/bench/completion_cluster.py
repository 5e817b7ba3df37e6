"""The completion table on the real node (issue #11 item 1, cluster part): the local bench's
seeded tasks and fault mix (``_completion_tasks``, ``completion_mix.yaml``), each run as an
AgentTask with the AgentTask's defaults (the tether arm only) by the operator, and a seeded
fraction of them evicted through the Eviction API at a seeded step mid-task.

    python -m tests.bench.completion_cluster --tasks 100 --seed 20261201 [--evict-fraction 0.2]

The model and tool doubles run in this process, bound to the address pods reach this machine
on (``tests/e2e/_tasks.py``); the operator runs as a child process from the tree with its
deployed Lease timings, started again if it exits (``completion_cluster_setup.py``), in a
namespace of this run's own, deleted at the end (``--keep`` keeps it). Prints a table, then as
its last line one JSON object shaped as the local bench's: ``{"tether": {tasks, completed,
silentWrong, explicitFailures, usdPerCompleted, evicted, resumed, ...}}``. Cost is the model
double's bill; every task's ``status.spentUSD`` is compared with it and a mismatch is listed
(``spendMismatches``), not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from kubernetes import client, config

from tests.bench import _completion_tether
from tests.bench._completion_tasks import BenchTask, make_tasks, mix
from tests.bench.completion_cluster_figures import (
    Finished,
    answer_of,
    eviction_plan,
    summarise,
    table,
)
from tests.bench.completion_cluster_setup import (
    Supervisor,
    apply_crds,
    operator_in,
    prepare_namespace,
    real_node,
    remove_namespace,
)
from tests.e2e._cluster import find_or_start
from tests.e2e._settings import settings
from tests.e2e._tasks import GROUP, VERSION, address_toward
from tether_examples import bench_model, bench_tools
from tether_examples._serve import serve_in_thread

__all__ = ["Driver", "bench_doubles", "drive", "main"]

TERMINAL = ("Succeeded", "Failed", "BudgetExceeded")
CONCURRENCY = 6  # task pods at once: what test_spend_campaign runs on the shared 2-core node
AGENT_EXIT_WAIT = 30.0  # seconds an ended task's agent gets to exit before its log is read


@dataclass
class Driver:
    """Creates the AgentTasks (at most ``concurrency`` unfinished), evicts the planned ones
    once their status shows the planned step, and collects each ended task's status and
    answer, deleting the task then (its claim and pods go with it)."""

    api: client.ApiClient
    ns: str
    bodies: list[tuple[str, dict[str, Any]]]  # (task id, AgentTask body) in creation order
    evict_at: dict[str, int]
    concurrency: int = CONCURRENCY
    finished: dict[str, Finished] = field(default_factory=dict)
    evicted: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)  # ended before its eviction could be sent

    def __post_init__(self) -> None:
        self.custom, self.core = client.CustomObjectsApi(self.api), client.CoreV1Api(self.api)
        self.pending = list(self.bodies)
        self.active: set[str] = set()
        self.ended_at: dict[str, float] = {}  # when the phase was first seen terminal

    def run(self, timeout: float, progress: bool = True,
            tick: Callable[[], None] | None = None) -> None:
        """Rounds until every task has ended; ``tick`` is called before each (supervision)."""
        deadline = time.monotonic() + timeout
        while self.pending or self.active:
            if tick is not None:
                tick()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.active) + len(self.pending)} tasks not ended in "
                                   f"{timeout}s (namespace {self.ns}): {sorted(self.active)}")
            before = (len(self.finished), len(self.evicted))
            self.round()
            if progress and (len(self.finished), len(self.evicted)) != before:
                print(f"{len(self.finished)}/{len(self.bodies)} ended, "
                      f"{len(self.evicted)} evicted", file=sys.stderr, flush=True)
            time.sleep(0.5)  # status changes come from the operator's 1 s polls

    def round(self) -> None:
        while self.pending and len(self.active) < self.concurrency:
            name, body = self.pending.pop(0)
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks",
                                                        body)
            self.active.add(name)
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks")
        for obj in listed["items"]:
            name, st = obj["metadata"]["name"], obj.get("status") or {}
            if name not in self.active:
                continue
            if st.get("phase") in TERMINAL:
                if self.agent_ended(name, st.get("podName")):
                    self.finish(name, st)
            elif name in self.evict_at and name not in self.evicted:
                self.maybe_evict(name, st)

    def agent_ended(self, name: str, pod: str | None) -> bool:
        """Whether the ended task's agent container shows terminated, so its log is whole (the
        kubelet's container status can lag the phase). After AGENT_EXIT_WAIT the log is read
        as it is."""
        since = self.ended_at.setdefault(name, time.monotonic())
        if not pod or time.monotonic() - since > AGENT_EXIT_WAIT:
            return True
        try:
            got = self.core.read_namespaced_pod(pod, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return all(s.state.terminated is not None for s in got.status.container_statuses or []
                   if s.name == "agent")

    def maybe_evict(self, name: str, st: dict[str, Any]) -> None:
        if st.get("phase") != "Running" or (st.get("step") or 0) < self.evict_at[name]:
            return
        pod = st.get("podName")
        try:
            self.core.create_namespaced_pod_eviction(pod, self.ns, {
                "metadata": {"name": pod, "namespace": self.ns}})
        except client.ApiException as exc:
            if exc.status == 404:
                return  # the pod is gone (the task is ending): the next round sees its phase
            raise
        self.evicted.add(name)

    def finish(self, name: str, st: dict[str, Any]) -> None:
        if name in self.evict_at and name not in self.evicted:
            self.missed.add(name)
        answer, why = self.answer(st.get("podName"))
        self.finished[name] = Finished(name, st["phase"], st, answer, name in self.evicted, why)
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks", name)
        self.active.discard(name)

    def answer(self, pod: str | None) -> tuple[str | None, str]:
        """The reference agent's answer (``answer_of`` its log), and the log's tail when there
        is none, to say why."""
        if not pod:
            return None, "no pod"
        try:
            log = str(self.core.read_namespaced_pod_log(pod, self.ns, container="agent"))
        except client.ApiException as exc:
            if exc.status in (400, 404):  # the pod or its container is gone
                return None, f"log of {pod} unreadable: {exc.status} {exc.reason}"
            raise
        text = answer_of(log)
        return (text, "") if text else (None, log[-400:])


def _latency(seconds: float) -> Any:
    """A provider's think time on every model answer: a real model takes seconds per call,
    the double none, and an eviction must be able to land mid-task (the operator shows a
    task's step once a second)."""
    @web.middleware
    async def slow(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/chat/completions"):
            await asyncio.sleep(seconds)
        return await handler(request)  # type: ignore[no-any-return]
    return slow


@contextmanager
def bench_doubles(host: str, latency: float) -> Iterator[tuple[str, str]]:
    """The local bench's model and tool doubles, bound to ``host`` (pods reach it); yields
    their base URLs."""
    model_app = bench_model.build_app(mix())
    if latency > 0:
        model_app.middlewares.append(_latency(latency))
    with serve_in_thread(model_app, host=host) as model, \
            serve_in_thread(bench_tools.build_app(mix()), host=host) as tools:
        yield model, tools


def body(task: BenchTask, model: str, tools: str, run: str) -> dict[str, Any]:
    """The local bench's AgentTask of ``task`` (every harness default kept), with what a
    cluster needs besides: the images under test, the model key's Secret, the claim's class."""
    got = _completion_tether.agenttask(task, model, tools, run)
    got["metadata"] = {"name": task.id, "labels": {"tether.dev/bench": run}}
    spec = got["spec"]
    spec["agent"] = {**spec["agent"], **settings().container("agent")}
    spec["model"] = {**spec["model"],
                     "credentialsSecretRef": {"name": "model-creds", "key": "api-key"}}
    if settings().storage_class:
        spec["checkpoint"] = {"storageClassName": settings().storage_class}
    return got


def drive(api: client.ApiClient, ns: str, tasks: list[BenchTask], evict_at: dict[str, int],
          doubles: tuple[str, str], supervisor: Supervisor, concurrency: int = CONCURRENCY,
          timeout: float = 3600, progress: bool = True) -> dict[str, Any]:
    """Every task through the operator already watching ``ns`` (kept up by ``supervisor``);
    the figures. The doubles (``bench_doubles``' URLs) keep this run's attempts and bills
    apart under its own name."""
    model, tools = doubles
    run_name = f"cluster-{ns}"
    driver = Driver(api, ns, [(t.id, body(t, model, tools, run_name)) for t in tasks],
                    evict_at, concurrency)
    started = time.monotonic()
    driver.run(timeout, progress, supervisor)
    seconds = time.monotonic() - started
    bills = httpx.get(f"{model}/_bench/{run_name}/bills").raise_for_status().json()
    figures = summarise(tasks, driver.finished, driver.missed, bills, seconds)
    figures["tether"]["operatorRestarts"] = supervisor.restarts
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.completion_cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100, help="AgentTasks (default 100)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--evict-fraction", type=float, default=0.2,
                        help="share of the tasks evicted mid-task (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help="unfinished AgentTasks at once (default %(default)s)")
    parser.add_argument("--model-latency", type=float, default=0.3,
                        help="seconds the model double takes per answer (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the run")
    parser.add_argument("--keep", action="store_true", help="keep the namespace afterwards")
    args = parser.parse_args(argv)
    found = find_or_start(settings())
    api = config.new_client_from_config(config_file=str(found.kubeconfig))
    core = client.CoreV1Api(api)
    node = real_node(core)
    host = settings().host_ip or address_toward(next(
        a.address for a in node.status.addresses if a.type == "InternalIP"))
    tasks = make_tasks(args.tasks, args.seed)
    evict_at = eviction_plan([t.id for t in tasks], {t.id: t.steps for t in tasks}, args.seed,
                             args.evict_fraction)
    ns = f"bench-completion-{args.seed}-{uuid.uuid4().hex[:5]}"
    apply_crds(api)
    prepare_namespace(core, ns)
    try:
        with bench_doubles(host, args.model_latency) as doubles, operator_in(found, ns) as op:
            figures = drive(api, ns, tasks, evict_at, doubles, Supervisor(op),
                            args.concurrency, args.timeout)
    finally:
        if not args.keep:
            remove_namespace(api, ns)
    print(table(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
