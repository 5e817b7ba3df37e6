"""The one module that talks to the API server, through ``kubernetes_asyncio``'s REST client.

Reads return plain dicts exactly as the API server sends them (camelCase), so the pure modules
work on the same shapes as ``kubectl get -o json``. Credentials come from credentials.py (the
same login kopf's watches use) and are loaded again when they expire or the server says 401;
the library's client honours the kubeconfig's CA, client certificate, ``proxy-url`` and
``tls-server-name``. Every failure is an ``ApiError`` with the status and the server's message
(status 0: the server could not be reached, or credentials that worked before failed to
reload); ``Conflict`` is the 409 of an optimistic-concurrency write.

Each ``Kube`` has its own connection pool and request timeout: the Lease has one of its own,
so worker traffic never queues its renewals (leader.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTClientObject

from .credentials import CredentialsError, Login, login

__all__ = ["GROUP", "VERSION", "ApiError", "Conflict", "Kube"]

log = logging.getLogger(__name__)
GROUP, VERSION = "tether.dev", "v1alpha1"
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "tether-operator"
Body = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status, self.reason, self.message = status, reason, message


class Conflict(ApiError):
    """The object changed since it was read (optimistic concurrency): read again and retry."""


def _custom(ns: str, plural: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


_CORE = {"Pod": "pods", "ConfigMap": "configmaps", "ServiceAccount": "serviceaccounts",
         "PersistentVolumeClaim": "persistentvolumeclaims", "Event": "events"}


def _error(status: int, reason: str, raw: bytes | str | None) -> ApiError:
    """The server's Status object (or whatever it sent) as our error."""
    try:
        doc = orjson.loads(raw or b"")
        reason, message = doc.get("reason") or reason, doc.get("message", "")
    except (orjson.JSONDecodeError, AttributeError):  # not a Status object
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
        message = text[:300]
    return (Conflict if status == 409 else ApiError)(status, reason, message)


class Kube:
    def __init__(self, *, context: str | None = None, connections: int = 32,
                 timeout: float = 30.0) -> None:
        self.context, self.connections, self.timeout = context, connections, timeout
        self._login: Login | None = None
        self._rest: RESTClientObject | None = None
        self._tls: tuple[Any, ...] | None = None
        self._retired: list[tuple[float, RESTClientObject]] = []
        self._lock = asyncio.Lock()

    async def _client(self, force: bool = False
                      ) -> tuple[RESTClientObject, str, dict[str, str]]:
        """The client, server and auth headers to use, logging in again when expired. A
        refreshed token changes only the headers; new TLS material a new client (the old one
        is closed once the calls in flight on it have timed out at the latest)."""
        async with self._lock:
            done = self._login
            if done is None or force or done.expiration <= datetime.now(UTC):
                try:
                    done = self._login = await login(self.context)
                except CredentialsError as exc:
                    if done is None:
                        raise  # never logged in: the configuration is wrong (exit 2)
                    # Worked before (a plugin's hiccup, a file mid-rotation): retry later.
                    raise ApiError(0, "Credentials", f"reloading credentials: {exc}") from exc
            now = asyncio.get_running_loop().time()
            if self._rest is None or done.tls != self._tls:
                if self._rest is not None:
                    self._retired.append((now, self._rest))
                done.config.connection_pool_maxsize = self.connections
                self._rest, self._tls = RESTClientObject(done.config), done.tls
            while self._retired and self._retired[0][0] + self.timeout < now:
                await self._retired.pop(0)[1].close()
            # The server may have a path (behind a proxy): paths are appended to it.
            return self._rest, str(done.config.host).rstrip("/"), done.headers

    async def close(self) -> None:
        for _, old in self._retired:
            await old.close()
        self._retired.clear()
        if self._rest is not None:
            await self._rest.close()
            self._rest = None

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json", accept: str | None = None,
                      **params: str) -> Any:
        """One API call; the decoded JSON answer. Logs in again once on a 401. ``accept``
        asks for another representation (e.g. PartialObjectMetadata)."""
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        for attempt in (1, 2):
            rest, server, auth = await self._client(force=attempt == 2)
            try:
                resp = await rest.request(
                    method, server + path, query_params=dict(params) or None,
                    headers={**auth, **headers}, body=body, _request_timeout=self.timeout)
            except ApiException as exc:
                if exc.status == 401 and attempt == 1:
                    continue
                raise _error(exc.status or 0, exc.reason or "", exc.body) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, "Unreachable", f"{method} {server}{path}: "
                               f"{type(exc).__name__}: {exc}") from exc
            return orjson.loads(resp.data) if resp.data else None
        raise AssertionError("unreachable")  # the loop returns or raises

    async def get_task(self, ns: str, name: str) -> Body | None:
        try:
            doc: Body = await self.request("GET", _custom(ns, "agenttasks", name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return doc

    async def pods_of(self, ns: str, task: str) -> list[Body]:
        doc = await self.request("GET", f"/api/v1/namespaces/{ns}/pods",
                                 labelSelector=f"tether.dev/task={task}")
        items: list[Body] = doc["items"]
        return items

    async def pod_warnings(self, ns: str, pod_uid: str) -> list[Body]:
        """The Warning Events about one pod (by UID: pod names repeat across tasks of the
        same name)."""
        doc = await self.request("GET", f"/api/v1/namespaces/{ns}/events",
                                 fieldSelector=f"involvedObject.uid={pod_uid},type=Warning")
        items: list[Body] = doc["items"]
        return items

    async def ensure(self, obj: Body) -> bool:
        """Create ``obj`` unless it exists; True when this call created it."""
        return await self.create(obj) is not None

    async def create(self, obj: Body) -> Body | None:
        """Create ``obj``; the object as created, or None when one of that name exists."""
        ns = obj["metadata"]["namespace"]
        try:
            made: Body = await self.request(
                "POST", f"/api/v1/namespaces/{ns}/{_CORE[obj['kind']]}", obj)
        except Conflict:
            return None
        return made

    async def get_pod(self, ns: str, name: str) -> Body | None:
        try:
            doc: Body = await self.request("GET", f"/api/v1/namespaces/{ns}/pods/{quote(name)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return doc

    async def save(self, obj: Body, resource_version: str) -> None:
        """Replace ``obj`` (a ConfigMap), only if unchanged since ``resource_version``."""
        meta = obj["metadata"]
        body = {**obj, "metadata": {**meta, "resourceVersion": resource_version}}
        await self.request("PUT", f"/api/v1/namespaces/{meta['namespace']}/"
                           f"{_CORE[obj['kind']]}/{quote(meta['name'])}", body)

    async def get_config_map(self, ns: str, name: str) -> Body | None:
        try:
            doc: Body = await self.request("GET", f"/api/v1/namespaces/{ns}/configmaps/"
                                           f"{quote(name)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return doc

    async def annotate_pod(self, ns: str, name: str, annotations: dict[str, str]) -> bool:
        """Set annotations on a pod (merge patch); False when the pod is gone."""
        try:
            await self.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{quote(name)}",
                               {"metadata": {"annotations": annotations}}, MERGE)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def unpin_pod(self, pod: Body, finalizer: str) -> None:
        """Remove ``finalizer`` from ``pod`` (as read; read again when it changed since)."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{quote(meta['name'])}"
        for _ in range(5):
            if finalizer not in (meta.get("finalizers") or []):
                return
            body = {"metadata": {"finalizers": [f for f in meta["finalizers"] if f != finalizer],
                                 "resourceVersion": meta["resourceVersion"]}}
            try:
                await self.request("PATCH", path, body, MERGE)
                return
            except Conflict:
                meta = (await self.request("GET", path))["metadata"]
            except ApiError as exc:
                if exc.status != 404:
                    raise
                return
        raise Conflict(409, "Conflict", f"pod {meta['name']} kept changing")

    async def delete_pod(self, ns: str, name: str) -> None:
        try:
            await self.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{quote(name)}")
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch_task_status(self, ns: str, name: str, patch: Body,
                                resource_version: str | None = None) -> None:
        """Merge ``patch`` into the status; with ``resource_version``, only if unchanged since."""
        body: Body = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        await self.request("PATCH", _custom(ns, "agenttasks", name, "status"), body, MERGE)

    async def apply_task_status(self, task: Body, status: Body) -> Body:
        """Server-side apply of the whole ``status`` under field manager ``tether-operator``
        on the status subresource, conditional on the task's resourceVersion (a change since
        it was read is a ``Conflict``). Returns the task as written. Conditions merge by type
        (the CRD lists them as a map keyed on type)."""
        meta = task["metadata"]
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "resourceVersion": meta["resourceVersion"]},
                "status": status}
        # JSON is YAML: the client sends the apply patch as JSON.
        written: Body = await self.request(
            "PATCH", _custom(meta["namespace"], "agenttasks", meta["name"], "status"),
            body, APPLY, fieldManager=FIELD_MANAGER, force="true")
        return written

    async def patch_task_finalizers(self, ns: str, name: str, finalizers: list[str],
                                    resource_version: str) -> None:
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            await self.request("PATCH", _custom(ns, "agenttasks", name), body, MERGE)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def list_tasks(self, ns: str) -> list[Body]:
        items: list[Body] = (await self.request("GET", _custom(ns, "agenttasks")))["items"]
        return items

    async def list_budgets(self, ns: str) -> list[Body]:
        items: list[Body] = (await self.request("GET", _custom(ns, "agentbudgets")))["items"]
        return items

    async def get_budget(self, ns: str, name: str) -> Body:
        doc: Body = await self.request("GET", _custom(ns, "agentbudgets", name))
        return doc

    async def replace_budget_status(self, budget: Body, status: Body) -> None:
        """Write the whole status, only if nobody changed the budget since it was read."""
        meta = budget["metadata"]
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentBudget",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "resourceVersion": meta["resourceVersion"]},
                "spec": budget["spec"], "status": status}
        await self.request("PUT", _custom(meta["namespace"], "agentbudgets", meta["name"],
                                          "status"), body)

    async def event(self, task: Body, type_: str, reason: str, message: str) -> None:
        await self.event_on(task, type_, reason, message)

    async def event_on(self, obj: Body, type_: str, reason: str, message: str,
                       component: str = "tether-operator") -> None:
        """An Event about ``obj`` (one of our resources, as read), from ``component``."""
        meta, kind = obj["metadata"], obj.get("kind", "AgentTask")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                                   "name": meta["name"], "namespace": meta["namespace"],
                                   "uid": meta["uid"]},
                "type": type_, "reason": reason, "message": message[:1000],
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "source": {"component": component}}
        try:
            await self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except ApiError as exc:  # an event is a courtesy; its loss must not stop the work
            log.warning("Could not post event %s on %s %s/%s: %s", reason, kind.lower(),
                        meta["namespace"], meta["name"], exc)
