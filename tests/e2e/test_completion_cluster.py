"""The completion table's seeded slice on the real node (issue #11 item 1, cluster part): the
local bench's first tasks of one seed, fault mix included, run as AgentTasks with the
AgentTask's defaults by the operator, a quarter of them evicted (the Eviction API) at a seeded
step mid-task. No task reports a wrong answer as success; every evicted task resumed on a later
attempt from its checkpoint and ended with the right answer or an explicit failure; each task's
``status.spentUSD`` is what the model double billed it.

The full measurement is ``python -m tests.bench.completion_cluster`` (docs/completion.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.bench._completion_tasks import make_tasks
from tests.bench.completion_cluster import bench_doubles, drive
from tests.bench.completion_cluster_figures import eviction_plan
from tests.bench.completion_cluster_setup import Supervisor

from ._settings import E2ESettings
from ._tasks import address_toward
from .test_operator import Operator, crds, operator

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "operator"]  # fixtures, used here by name

SEED = 20261201
TASKS = 8
EVICT_FRACTION = 0.25  # 2 of the 8


@pytest.fixture
def doubles(core: client.CoreV1Api, real_node: str, e2e_settings: E2ESettings
            ) -> Iterator[tuple[str, str]]:
    node = core.read_node(real_node)
    host = e2e_settings.host_ip or address_toward(next(
        a.address for a in node.status.addresses if a.type == "InternalIP"))
    with bench_doubles(host, latency=0.3) as urls:
        yield urls


def test_seeded_slice_has_no_silent_wrong_answer_and_every_eviction_resumes(
        operator: Operator, doubles: tuple[str, str], api: client.ApiClient,
        namespace: str) -> None:
    tasks = make_tasks(TASKS, SEED)
    evict_at = eviction_plan([t.id for t in tasks], {t.id: t.steps for t in tasks}, SEED,
                             EVICT_FRACTION)
    assert len(evict_at) == 2
    figures = drive(api, namespace, tasks, evict_at, doubles, Supervisor(operator), timeout=600,
                    progress=False)
    got = figures["tether"]
    print(f"\n{got}")
    assert got["tasks"] == TASKS
    assert got["completed"] + got["silentWrong"] + got["explicitFailures"] == TASKS
    assert got["silentWrong"] == 0, got["notCompleted"]  # evicted ones included
    assert got["evictionsMissed"] == 0 and got["evicted"] == len(evict_at), got
    assert got["resumed"] == got["evicted"], got  # attempt >= 2, from the checkpoint
    assert got["spendMismatches"] == [], got["spendMismatches"]
    assert got["usd"] > 0
