"""What the operator's e2e tests share with the chart's: the AgentTask they create, the model
and tool doubles the task's pods call, and waiting on a task's status.

The doubles run in this process, bound to the address this machine reaches the node from, which
pods reach back (on this machine's cluster the bridge, 10.88.0.1; on kind the Docker network's
gateway; ``TETHER_E2E_HOST_IP`` overrides it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client

from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread

from ._settings import E2ESettings, settings

__all__ = ["GROUP", "VERSION", "Doubles", "Tasks", "agent_answer", "agenttask", "doubles",
           "steps_script", "tasks"]

GROUP, VERSION = "tether.dev", "v1alpha1"


def steps_script(steps: int, delay: float = 0.0) -> dict[str, Any]:
    turns: list[dict[str, Any]] = []
    for i in range(steps - 1):
        tool = "record" if i % 3 == 2 else "search"
        turns.append({"content": f"step {i}", "delay": delay,
                      "tool_calls": [{"id": f"call_{i}", "name": tool, "arguments": {"i": i}}],
                      "usage": {"input_tokens": 200 + 10 * i, "output_tokens": 20}})
    turns.append({"content": f"FINAL after {steps} steps", "usage": {"input_tokens": 500,
                                                                      "output_tokens": 8}})
    return {"model": "gpt-4o", "turns": turns}


@dataclass
class Doubles:
    model: str
    tools: str

    def use(self, script: dict[str, Any]) -> None:
        httpx.post(self.model + "/_scripted/reset", json={"script": script}).raise_for_status()
        httpx.post(self.tools + "/_reset").raise_for_status()

    def model_requests(self) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = httpx.get(self.model + "/_scripted/requests").json()
        return got

    def side_effects(self) -> list[Any]:
        effects: list[Any] = httpx.get(self.tools + "/_hits").json()["side_effects"]
        return effects


def address_toward(ip: str) -> str:
    """The local address this machine sends from to ``ip``: a UDP connect only picks the
    route, no packet leaves. For a node on this machine it is the node's own address."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET,
                       socket.SOCK_DGRAM) as sock:
        sock.connect((ip, 9))
        local: str = sock.getsockname()[0]
        return local


@pytest.fixture(scope="module")
def doubles(core: client.CoreV1Api, real_node: str, e2e_settings: E2ESettings
            ) -> Iterator[Doubles]:
    node = core.read_node(real_node)
    host = e2e_settings.host_ip or address_toward(next(
        a.address for a in node.status.addresses if a.type == "InternalIP"))
    with serve_in_thread(scripted_model.build_app(steps_script(3)), host=host) as model, \
            serve_in_thread(fault_tools.build_app(), host=host) as tools:
        yield Doubles(model, tools)


def agenttask(name: str, doubles: Doubles, hard: str = "5.00", labels: dict[str, str] | None = None,
              **spec: Any) -> dict[str, Any]:
    checkpoint = {"size": "64Mi"}
    if settings().storage_class:
        checkpoint["storageClassName"] = settings().storage_class
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "agent": {**settings().container("agent"),
                      "command": ["python", "-m", "tether_examples.reference_agent"]},
            "task": {"instructions": "Write the records."},
            # The doubles serve plain HTTP on the host: allowed explicitly, as a user would.
            "model": {"provider": "openai", "name": "gpt-4o", "baseURL": doubles.model + "/v1",
                      "allowPlaintextHTTP": True,
                      "credentialsSecretRef": {"name": "model-creds", "key": "api-key"}},
            "tools": [{"name": "search", "url": doubles.tools + "/ok"},
                      {"name": "record", "url": doubles.tools + "/side-effect",
                       "sideEffects": True, "idempotencyHeader": "Idempotency-Key"}],
            "costEnvelope": {"hardLimitUSD": hard},
            "retryPolicy": {"calls": {"initialInterval": "50ms"}},
            "checkpoint": checkpoint,
            **spec,
        },
    }
    return body


class Tasks:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.ns = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "agenttasks", body)

    def get(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "agenttasks", name)
        return got

    def wait(self, name: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 180.0
             ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.get(name)
            if pred(task.get("status") or {}):
                return task
            time.sleep(0.5)
        raise AssertionError(f"agenttask {name} did not get there in {timeout}s: "
                             f"{self.get(name).get('status')}")

    def done(self, name: str, timeout: float = 240.0) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") in ("Succeeded", "Failed",
                                                            "BudgetExceeded"), timeout)


@pytest.fixture
def tasks(api: client.ApiClient, namespace: str) -> Tasks:
    return Tasks(api, namespace)


def agent_answer(core: client.CoreV1Api, ns: str, pod: str) -> str:
    log = str(core.read_namespaced_pod_log(pod, ns, container="agent"))
    return next(line for line in log.splitlines() if line.startswith("FINAL"))
