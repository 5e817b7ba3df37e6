"""The one module that talks to the API server (the official ``kubernetes`` client).

Reads return plain dicts exactly as the API server sends them (camelCase), so the pure modules
work on the same shapes as ``kubectl get -o json``. The client is synchronous; calls run in
worker threads so the operator's event loop keeps serving events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

__all__ = ["GROUP", "VERSION", "Conflict", "Kube"]

log = logging.getLogger(__name__)
GROUP, VERSION = "tether.dev", "v1alpha1"
MERGE = "application/merge-patch+json"
Body = dict[str, Any]


class Conflict(Exception):
    """The object changed since it was read (optimistic concurrency): read again and retry."""


def _load() -> client.ApiClient:
    conf = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=conf)  # type: ignore[no-untyped-call]
    conf.connection_pool_maxsize = 32  # as many as the worker threads that share it
    return client.ApiClient(conf)


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or _load()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    @staticmethod
    def _json(resp: Any) -> Any:
        return json.loads(resp.data)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def get_task(self, ns: str, name: str) -> Body | None:
        try:
            resp = await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION, ns,
                                    "agenttasks", name, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        doc: Body = self._json(resp)
        return doc

    async def pods_of(self, ns: str, task: str) -> list[Body]:
        resp = await self._call(self.core.list_namespaced_pod, ns,
                                label_selector=f"tether.dev/task={task}", _preload_content=False)
        items: list[Body] = self._json(resp)["items"]
        return items

    async def ensure(self, obj: Body) -> bool:
        """Create ``obj`` unless it exists; True when this call created it."""
        kind, ns = obj["kind"], obj["metadata"]["namespace"]
        create = {"Pod": self.core.create_namespaced_pod,
                  "ConfigMap": self.core.create_namespaced_config_map,
                  "ServiceAccount": self.core.create_namespaced_service_account,
                  "PersistentVolumeClaim":
                      self.core.create_namespaced_persistent_volume_claim}[kind]
        try:
            await self._call(create, ns, obj, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_pod(self, ns: str, name: str) -> None:
        try:
            await self._call(self.core.delete_namespaced_pod, name, ns,
                             _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_task_status(self, ns: str, name: str, patch: Body,
                                resource_version: str | None = None) -> None:
        """Merge ``patch`` into the status; with ``resource_version``, only if unchanged since."""
        body: Body = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            await self._call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                             ns, "agenttasks", name, body, _content_type=MERGE,
                             _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"agenttask {ns}/{name} changed") from exc
            raise

    async def patch_task_finalizers(self, ns: str, name: str, finalizers: list[str],
                                    resource_version: str) -> None:
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            await self._call(self.custom.patch_namespaced_custom_object, GROUP, VERSION, ns,
                             "agenttasks", name, body, _content_type=MERGE,
                             _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"agenttask {ns}/{name} changed") from exc
            if exc.status != 404:
                raise

    async def list_budgets(self, ns: str) -> list[Body]:
        resp = await self._call(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                                "agentbudgets", _preload_content=False)
        items: list[Body] = self._json(resp)["items"]
        return items

    async def get_budget(self, ns: str, name: str) -> Body:
        resp = await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION, ns,
                                "agentbudgets", name, _preload_content=False)
        doc: Body = self._json(resp)
        return doc

    async def replace_budget_status(self, budget: Body, status: Body) -> None:
        """Write the whole status, only if nobody changed the budget since it was read."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentBudget",
                "metadata": {"name": budget["metadata"]["name"],
                             "namespace": budget["metadata"]["namespace"],
                             "resourceVersion": budget["metadata"]["resourceVersion"]},
                "spec": budget["spec"], "status": status}
        try:
            await self._call(self.custom.replace_namespaced_custom_object_status, GROUP,
                             VERSION, budget["metadata"]["namespace"], "agentbudgets",
                             budget["metadata"]["name"], body, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"agentbudget {budget['metadata']['name']} changed") from exc
            raise

    async def event(self, task: Body, type_: str, reason: str, message: str) -> None:
        meta = task["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask",
                                   "name": meta["name"], "namespace": meta["namespace"],
                                   "uid": meta["uid"]},
                "type": type_, "reason": reason, "message": message[:1000],
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "source": {"component": "tether-operator"}}
        try:
            await self._call(self.core.create_namespaced_event, meta["namespace"], body,
                             _preload_content=False)
        except ApiException as exc:  # an event is a courtesy; its loss must not stop the work
            log.warning("Could not post event %s on agenttask %s/%s: %s", reason,
                        meta["namespace"], meta["name"], exc.reason)
