"""Task pods as hardened by issue #9, on the real node, with the operator as a child process (as
in test_operator.py):

- both containers run with a read-only root filesystem, and a task still succeeds: the agent
  proves it cannot write to / but can write to its /tmp and HOME, then runs the reference agent;
- a task whose model is an https server with a private CA (made here with trustme, a thin layer
  over the ``cryptography`` package) reaches it through ``spec.model.caBundle`` from a
  ConfigMap; without the bundle the same task's model calls fail the TLS check.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trustme
from aiohttp import web
from kubernetes import client

from tether_examples import scripted_model

from ._tasks import Doubles, Tasks, agent_answer, agenttask, doubles, steps_script, tasks
from .test_operator import Operator, crds, operator

pytestmark = [pytest.mark.cluster, pytest.mark.node]
__all__ = ["crds", "doubles", "operator", "tasks"]  # fixtures used here by name

# The agent's own check before the reference agent runs: the root is read-only (EROFS), HOME
# and /tmp are not.
PROBE = """
import errno, os, pathlib, runpy
try:
    open('/written-by-agent', 'w')
    raise SystemExit('the root filesystem is writable')
except OSError as exc:
    assert exc.errno == errno.EROFS, exc
pathlib.Path(os.environ['HOME'], 'probe').write_text('home')
pathlib.Path('/tmp/probe').write_text('tmp')
print('READ-ONLY ROOT, WRITABLE HOME', os.environ['HOME'], flush=True)
runpy.run_module('tether_examples.reference_agent', run_name='__main__')
"""


def test_a_task_runs_with_read_only_roots(operator: Operator, tasks: Tasks, doubles: Doubles,
                                          core: client.CoreV1Api, namespace: str) -> None:
    doubles.use(steps_script(3))
    body = agenttask("readonly", doubles)
    body["spec"]["agent"]["command"] = ["python", "-c", PROBE]
    tasks.create(body)
    status = tasks.done("readonly")["status"]
    assert status["phase"] == "Succeeded", status
    pod = core.read_namespaced_pod(status["podName"], namespace)
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        assert container.security_context.read_only_root_filesystem is True, container.name
        assert any(m.mount_path == "/tmp" for m in container.volume_mounts), container.name
    log = str(core.read_namespaced_pod_log(status["podName"], namespace, container="agent"))
    assert "READ-ONLY ROOT, WRITABLE HOME /tmp" in log
    assert agent_answer(core, namespace, status["podName"]) == "FINAL after 3 steps"


class TLSModel:
    """The scripted model served over https with a certificate of a private CA, on the host
    address the node reaches (as the plain doubles)."""

    def __init__(self, host: str) -> None:
        self.ca = trustme.CA()
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> TLSModel:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.host).configure_cert(ctx)
        self._thread = threading.Thread(target=self._serve, args=(ctx,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the https model did not start"
        return self

    def _serve(self, ctx: ssl.SSLContext) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._runner = web.AppRunner(scripted_model.build_app(steps_script(2)))
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, 0, ssl_context=ctx)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"https://{self.host}:{port}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def requests(self) -> list[dict[str, Any]]:
        # Read through the app's own endpoint, trusting the private CA.
        with httpx.Client(verify=self.ca_context()) as http:
            got: list[dict[str, Any]] = http.get(self.url + "/_scripted/requests").json()
        return got

    def ca_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture
def tls_model(doubles: Doubles) -> Iterator[TLSModel]:
    host = doubles.model.removeprefix("http://").rsplit(":", 1)[0]
    with TLSModel(host) as model:
        yield model


def _https_task(name: str, tls_model: TLSModel, doubles: Doubles, **model: Any
                ) -> dict[str, Any]:
    body = agenttask(name, doubles, retryPolicy={"calls": {"initialInterval": "50ms",
                                                            "maxAttempts": 2},
                                                  "pod": {"backoffLimit": 0}})
    spec_model = body["spec"]["model"]
    spec_model.pop("allowPlaintextHTTP")  # https: no exception needed
    spec_model.update(baseURL=tls_model.url + "/v1", **model)
    return body


def test_a_private_ca_bundle_lets_the_sidecar_reach_an_https_model(
        operator: Operator, tasks: Tasks, doubles: Doubles, tls_model: TLSModel,
        core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="private-ca"),
        data={"ca.pem": tls_model.ca.cert_pem.bytes().decode()}))
    tasks.create(_https_task("with-ca", tls_model, doubles, caBundle={
        "configMapKeyRef": {"name": "private-ca", "key": "ca.pem"}}))
    status = tasks.done("with-ca")["status"]
    assert status["phase"] == "Succeeded", status
    assert Decimal(status["spentUSD"]) > 0
    assert agent_answer(core, namespace, status["podName"]) == "FINAL after 2 steps"
    assert all(r["authorization"] == "Bearer sk-e2e" for r in tls_model.requests())

    # The same model without the bundle: the system store does not know the CA, no call gets
    # through, and the task fails.
    served = len(tls_model.requests())
    tasks.create(_https_task("without-ca", tls_model, doubles))
    status = tasks.done("without-ca")["status"]
    assert status["phase"] == "Failed", status
    assert len(tls_model.requests()) == served
