"""Leader election on a ``coordination.k8s.io/v1`` Lease: one active replica, the others wait.

A replica becomes the leader by writing its identity into the Lease, and stays it by renewing
``renewTime`` every ``renew`` seconds. A standby takes over when it has seen the Lease unchanged
for ``duration`` seconds *by its own clock* (the holder's clock is never compared with ours, so
clock skew between nodes does not matter). Every write carries the resourceVersion it was
computed from, so two replicas racing for the Lease cannot both win.

A leader that cannot renew within ``deadline`` has lost the Lease: ``keep`` returns and the
process exits, to come back as a standby. A leader stopping cleanly hands the Lease back, so a
standby takes over at once instead of after ``duration``. Leadership is not a fence: a leader
paused past its Lease could still write once; the operator's writes are safe against that
anyway (status patches carry resourceVersion preconditions, pod names are deterministic).

The Lease talks through a ``Kube`` of its own (``lease_client``): its own connection pool, so
a thousand reconciles in flight cannot queue a renewal behind them, and a request timeout
short enough that a renewal round (a read and a write) ends before ``deadline`` even when the
API server hangs. A round is also cut off at the deadline as a whole (a slow login included).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from .kube import ApiError, Kube

__all__ = ["Lease", "lease_client"]

log = logging.getLogger(__name__)


def call_timeout(renew: float, deadline: float) -> float:
    """Per request: a round's read and write both fit between a renew and the deadline."""
    return (deadline - renew) / 2


def lease_client(context: str | None, renew: float, deadline: float) -> Kube:
    """The Lease's own client: a small pool no worker shares, and short timeouts."""
    return Kube(context=context, connections=2, timeout=call_timeout(renew, deadline))


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, *,
                 duration: float = 15.0, renew: float = 5.0, deadline: float = 10.0) -> None:
        if not renew < deadline < duration:
            raise ValueError(f"need renew < deadline < duration, got {renew}, {deadline}, "
                             f"{duration}")
        if kube.timeout > call_timeout(renew, deadline):
            raise ValueError(f"the lease client's request timeout {kube.timeout} s must be at "
                             f"most {call_timeout(renew, deadline)} s: use lease_client()")
        self.kube, self.identity = kube, identity
        self.namespace, self.name = namespace, name
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.path = f"{self.collection}/{name}"
        self.duration, self.renew, self.deadline = duration, renew, deadline
        self.leading = False
        self.holder: str | None = None  # who holds it, as last read
        self.last_read = 0.0  # monotonic time of the last successful read or write
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0

    async def _try(self) -> bool:
        """One round: acquire or renew; True when we hold the Lease after it."""
        now = _micro_now()
        mine = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        try:
            lease = await self.kube.request("GET", self.path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                await self.kube.request("POST", self.collection, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": mine})
            except ApiError as exc2:
                if exc2.status == 409:  # another replica created it first
                    return False
                raise
            self.last_read, self.holder = time.monotonic(), self.identity
            return True
        self.last_read = time.monotonic()
        spec = lease.get("spec") or {}
        self.holder = spec.get("holderIdentity") or None
        seen = (self.holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if seen != self._seen:
            self._seen, self._seen_at = seen, self.last_read
        if self.holder not in (None, self.identity):
            held_for = spec.get("leaseDurationSeconds") or self.duration
            if self.last_read - self._seen_at < held_for:
                return False  # the holder renewed within its duration, as far as we saw
            log.warning("Lease held by %s not renewed for %.0f s: taking over", self.holder,
                        self.last_read - self._seen_at)
        if self.holder == self.identity:
            mine["acquireTime"] = spec.get("acquireTime") or now
            mine["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            mine["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**spec, **mine}
        try:
            await self.kube.request("PUT", self.path, lease)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        self.holder = self.identity
        return True

    async def acquire(self) -> None:
        """Wait until this replica leads."""
        waiting_for: str | None = ""
        while True:
            try:
                if await self._try():
                    self.leading = True
                    log.info("Leading as %s", self.identity)
                    return
            except ApiError as exc:
                log.warning("Could not read the lease: %s", exc)
            if self.holder != waiting_for and self.holder is not None:
                waiting_for = self.holder
                log.info("Standing by: the lease is held by %s", self.holder)
            await asyncio.sleep(self.renew * random.uniform(0.8, 1.2))

    async def keep(self) -> None:
        """Renew until that fails for ``deadline`` seconds or another replica holds the Lease;
        then return (leadership is lost)."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.renew)
            try:
                # The whole round, login included, ends by the deadline.
                async with asyncio.timeout(max(0.0, last_ok + self.deadline - time.monotonic())):
                    renewed = await self._try()
                if renewed:
                    last_ok = time.monotonic()
                    continue
                if self.holder not in (None, self.identity):
                    log.error("Lost the lease to %s", self.holder)
                    break
            except ApiError as exc:
                log.warning("Could not renew the lease: %s", exc)
            except TimeoutError:
                log.warning("Could not renew the lease within %.0f s", self.deadline)
            if time.monotonic() - last_ok >= self.deadline:
                log.error("Could not renew the lease for %.0f s", self.deadline)
                break
        self.leading = False

    async def release(self) -> None:
        """Hand the Lease back on a clean stop, so a standby need not wait out ``duration``."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self.kube.request("GET", self.path)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1,
                                 renewTime=_micro_now())
            await self.kube.request("PUT", self.path, lease)
            log.info("Released the lease")
        except ApiError as exc:
            log.warning("Could not release the lease (a standby takes over after %.0f s): %s",
                        self.duration, exc)
