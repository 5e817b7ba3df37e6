"""The Agents-SDK reference agent on the real node through the operator: its MCP tool server
runs as a Deployment and Service in the test's namespace (examples/kubernetes/mcp-tools.yaml,
in the agent image), the scripted model plays examples/scripts/agents.yaml from this process
(``_tasks.doubles``). Evicted mid-task (the Eviction API), the task resumes from its checkpoint
and answers as an uninterrupted run does, and the destructive ``open_ticket`` ran once.

The answer quotes the numbered status check and the ticket id, so a resume that redid a
checkpointed step, or opened a second ticket, would answer differently.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
import yaml
from kubernetes import client

from ._cluster import REPO_ROOT
from ._settings import settings
from ._tasks import GROUP, VERSION, Doubles, Tasks, agenttask, doubles, tasks
from .test_operator import Operator, crds, operator

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "operator", "tasks"]  # fixtures, used here by name

ANSWER = ("Root cause: the payment gateway's TLS certificate expired (renewal was manual). "
          "Now: payments: healthy (check #1). Follow-up: TCK-1.")
SERVICE = "mcp-tools:8082"


def script() -> dict[str, Any]:
    """examples/scripts/agents.yaml, slowed down: the model takes 6 s over step 3's call, so
    an eviction sent once step 2 is checkpointed lands while the agent waits for it."""
    doc: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples/scripts/agents.yaml").read_text())
    for i, turn in enumerate(doc["turns"]):
        turn["delay"] = 6.0 if i == 2 else 0.3
    return doc


@pytest.fixture
def mcp_tools(api: client.ApiClient, core: client.CoreV1Api, namespace: str) -> str:
    """examples/kubernetes/mcp-tools.yaml in the test's namespace, with the images under
    test; the MCP URL its Service answers at, once the pod is ready."""
    docs = list(yaml.safe_load_all((REPO_ROOT / "examples/kubernetes/mcp-tools.yaml").read_text()))
    deployment, service = docs
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    deployment["spec"]["template"]["spec"]["containers"][0].update(settings().container("agent"))
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_service(namespace, service)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace,
                                        label_selector="app.kubernetes.io/name=mcp-tools").items
        if any(c.type == "Ready" and c.status == "True"
               for p in pods for c in p.status.conditions or []):
            return f"http://mcp-tools.{namespace}.svc:8082/mcp"
        time.sleep(0.5)
    pytest.fail(f"the mcp-tools pod in {namespace} was not Ready in 120 s: "
                f"{[p.status.to_dict() for p in pods]}")


def effects(core: client.CoreV1Api, ns: str) -> dict[str, Any]:
    """The server's record of its tool calls, through the API server's service proxy."""
    raw = core.connect_get_namespaced_service_proxy_with_path(
        SERVICE, ns, "_effects", _preload_content=False).data
    got: dict[str, Any] = json.loads(raw)
    return got


def reset(core: client.CoreV1Api, ns: str, doubles: Doubles) -> None:
    core.connect_post_namespaced_service_proxy_with_path(SERVICE, ns, "_reset",
                                                         _preload_content=False)
    doubles.use(script())


def agents_task(name: str, doubles: Doubles, mcp_url: str) -> dict[str, Any]:
    """The reference task with the second agent and the MCP server as its only tool."""
    return agenttask(
        name, doubles,
        agent={**settings().container("agent"),
               "command": ["python", "-m", "tether_examples.agents_agent"]},
        task={"instructions": "Find the root cause of last week's payment outage and open a "
                              "follow-up ticket."},
        tools=[{"name": "incidents", "mcp": {"url": mcp_url}, "timeout": "20s"}])


def answer(core: client.CoreV1Api, ns: str, pod: str) -> str:
    log = str(core.read_namespaced_pod_log(pod, ns, container="agent"))
    return next((line for line in log.splitlines() if line.startswith("Root cause:")),
                f"no answer in the agent's log:\n{log[-3000:]}")


def test_the_example_task_is_accepted_by_the_api_server(
        crds: None, api: client.ApiClient, namespace: str) -> None:
    """examples/agenttask-agents.yaml, as `tether run` takes it, passes the CRD's schema and
    rules too (server-side dry run: validated, not stored)."""
    body = yaml.safe_load((REPO_ROOT / "examples/agenttask-agents.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    made = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "agenttasks", body, dry_run="All")
    assert made["spec"]["tools"][0]["mcp"]["url"] == body["spec"]["tools"][0]["mcp"]["url"]


def test_evicted_agents_sdk_task_resumes_with_the_same_answer_and_one_ticket(
        operator: Operator, tasks: Tasks, doubles: Doubles, mcp_tools: str,
        core: client.CoreV1Api, namespace: str) -> None:
    reset(core, namespace, doubles)
    tasks.create(agents_task("baseline", doubles, mcp_tools))
    base = tasks.done("baseline")["status"]
    assert base["phase"] == "Succeeded", base
    assert answer(core, namespace, base["podName"]) == ANSWER
    base_requests = len(doubles.model_requests())

    reset(core, namespace, doubles)
    tasks.create(agents_task("evicted", doubles, mcp_tools))
    running = tasks.wait("evicted", lambda s: (s.get("step") or 0) >= 2)["status"]
    core.create_namespaced_pod_eviction(running["podName"], namespace, {
        "metadata": {"name": running["podName"], "namespace": namespace}})
    st = tasks.done("evicted")["status"]
    assert st["phase"] == "Succeeded", st
    assert st["evictions"] == 1 and st["attempt"] == 2, st
    assert answer(core, namespace, st["podName"]) == ANSWER  # as uninterrupted
    done = effects(core, namespace)
    assert done["tickets"] == ["Automate TLS certificate renewal for the payment gateway"]
    assert done["calls"] == {"search_incidents": 1, "read_report": 1, "check_status": 1,
                             "open_ticket": 1}  # no checkpointed step was run again
    assert len(doubles.model_requests()) <= base_requests + 1  # at most the call in flight
    assert Decimal(st["spentUSD"]) <= Decimal(base["spentUSD"]) + Decimal("0.01")
