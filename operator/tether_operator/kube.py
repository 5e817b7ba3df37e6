"""The one module that talks to the API server: a small asyncio client on aiohttp.

Reads return plain dicts exactly as the API server sends them (camelCase), so the pure modules
work on the same shapes as ``kubectl get -o json``. Credentials come from credentials.py (the
same ones kopf's watches use) and are loaded again when they expire or the server says 401.
Every failure is an ``ApiError`` with the status and the server's message (status 0: the
server could not be reached); ``Conflict`` is the 409 of an optimistic-concurrency write.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
import orjson

from .credentials import CredentialsError, load

__all__ = ["GROUP", "VERSION", "ApiError", "Conflict", "Kube"]

log = logging.getLogger(__name__)
GROUP, VERSION = "tether.dev", "v1alpha1"
MERGE = "application/merge-patch+json"
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


class Kube:
    def __init__(self, info: kopf.ConnectionInfo | None = None, *, context: str | None = None,
                 connections: int = 32, timeout: float = 30.0) -> None:
        self._info, self._context = info, context
        self._connections, self._timeout = connections, timeout
        self._session: aiohttp.ClientSession | None = None
        self._tls: tuple[Any, ...] | None = None
        self._retired: list[tuple[float, aiohttp.ClientSession]] = []
        self._lock = asyncio.Lock()

    async def _login(self, force: bool = False
                     ) -> tuple[aiohttp.ClientSession, str, dict[str, str]]:
        """The session, server and auth headers to use, reloading expired credentials. A
        refreshed token changes only the headers; new TLS material a new session (the old
        one is closed once the calls in flight on it are done)."""
        async with self._lock:
            info = self._info
            if info is None or force or (
                    info.expiration is not None and info.expiration <= datetime.now(UTC)):
                try:
                    fresh = await asyncio.to_thread(load, self._context)  # plugins block
                except CredentialsError as exc:
                    if info is None:
                        raise  # never logged in: the configuration is wrong (exit 2)
                    # Worked before (a plugin's hiccup, a file mid-rotation): retry later.
                    raise ApiError(0, "Credentials", f"reloading credentials: {exc}") from exc
                info = self._info = fresh
            tls = (info.server, info.ca_path, info.ca_data, info.insecure,
                   info.certificate_path, info.certificate_data, info.private_key_path,
                   info.private_key_data)
            now = asyncio.get_running_loop().time()
            if self._session is None or tls != self._tls:
                if self._session is not None:
                    self._retired.append((now, self._session))
                self._session, self._tls = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(),
                                                   limit=self._connections),
                    timeout=aiohttp.ClientTimeout(total=self._timeout)), tls
            while self._retired and self._retired[0][0] + self._timeout < now:
                await self._retired.pop(0)[1].close()
            # The server may have a path (behind a proxy): paths are appended to it.
            return self._session, info.server.rstrip("/"), info.as_http_headers()

    async def close(self) -> None:
        for _, old in self._retired:
            await old.close()
        self._retired.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json", **params: str) -> Any:
        """One API call; the decoded JSON answer. Logs in again once on a 401."""
        data = orjson.dumps(body) if body is not None else None
        for attempt in (1, 2):
            session, server, headers = await self._login(force=attempt == 2)
            if data is not None:
                headers = {**headers, "Content-Type": content_type}
            try:
                async with session.request(method, server + path, data=data,
                                           params=params or None, headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, "Unreachable", f"{method} {server}{path}: "
                               f"{type(exc).__name__}: {exc}") from exc
            if status == 401 and attempt == 1:
                continue
            if status >= 400:
                try:
                    doc = orjson.loads(raw)
                    reason, message = doc.get("reason", ""), doc.get("message", "")
                except (orjson.JSONDecodeError, AttributeError):  # not a Status object
                    reason, message = "", raw[:300].decode(errors="replace")
                cls = Conflict if status == 409 else ApiError
                raise cls(status, reason or resp.reason or "", message)
            return orjson.loads(raw) if raw else None
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

    async def ensure(self, obj: Body) -> bool:
        """Create ``obj`` unless it exists; True when this call created it."""
        ns = obj["metadata"]["namespace"]
        try:
            await self.request("POST", f"/api/v1/namespaces/{ns}/{_CORE[obj['kind']]}", obj)
        except Conflict:
            return False
        return True

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

    async def patch_task_finalizers(self, ns: str, name: str, finalizers: list[str],
                                    resource_version: str) -> None:
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            await self.request("PATCH", _custom(ns, "agenttasks", name), body, MERGE)
        except ApiError as exc:
            if exc.status != 404:
                raise

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
            await self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except ApiError as exc:  # an event is a courtesy; its loss must not stop the work
            log.warning("Could not post event %s on agenttask %s/%s: %s", reason,
                        meta["namespace"], meta["name"], exc)
