"""``python -m tether_operator``: run the operator, with leader election and the ops port.

    python -m tether_operator [--namespace NS ...] [--log-level INFO]

Settings are TETHER_OPERATOR_* variables (settings.py). With leader election on (the default),
any number of replicas may run: one leads (runs kopf and the reconcilers), the others stand by
and take over within the Lease duration. Exit codes: 0 on SIGTERM/SIGINT, 1 when leadership is
lost or kopf stops on its own (the pod restarts and comes back as a standby); 2 for invalid
settings or no usable credentials (the message says which).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
import uuid

import kopf
from pydantic import ValidationError

from .credentials import CredentialsError, login
from .handlers import register
from .kube import Kube
from .leader import Lease, lease_client
from .metrics import OperatorMetrics
from .ops import Health, serve
from .reconcile import Reconciler
from .settings import OperatorSettings

log = logging.getLogger("tether_operator")


async def run(namespaces: list[str], settings: OperatorSettings) -> int:
    # Unusable credentials stop the operator here (exit 2), with leader election or without.
    await login(settings.context)
    kube, metrics = Kube(context=settings.context), OperatorMetrics()
    identity = f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    lease = Lease(lease_client(settings.context, settings.lease_renew_seconds,
                               settings.lease_deadline_seconds),
                  settings.lease_namespace, settings.lease_name, identity,
                  duration=settings.lease_seconds, renew=settings.lease_renew_seconds,
                  deadline=settings.lease_deadline_seconds) if settings.leader_election else None
    health = Health(lease=lease, live_stall=max(60.0, 6 * settings.status_poll_seconds))
    runner = await serve(settings.ops_port, settings.ops_host, health, metrics) \
        if settings.ops_port else None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    code = 0
    try:
        if lease is not None:
            acquiring = asyncio.create_task(lease.acquire())
            await asyncio.wait([acquiring, asyncio.create_task(stopping.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if not acquiring.done():
                acquiring.cancel()
                return 0
            acquiring.result()  # raises what stopped it, e.g. unusable credentials
        rec = Reconciler(kube, settings, metrics)
        metrics.queue_depth.set_function(lambda: rec.backlog)

        def tick() -> None:
            health.live_tick = time.monotonic()

        register(rec, tick)
        kopf_stop = asyncio.Event()
        health.kopf_task = asyncio.create_task(kopf.operator(
            clusterwide=not namespaces, namespaces=namespaces,
            standalone=True,  # one leader by our Lease, not by kopf's peering
            # kopf would ask getpass for a user name, which a UID without a passwd entry
            # (65532 in our image) does not have.
            identity=identity,  # type: ignore[arg-type]  # kopf types it as a NewType of str
            ready_flag=health.kopf_ready, stop_flag=kopf_stop))
        watched = [health.kopf_task, asyncio.create_task(stopping.wait())]
        if lease is not None:
            watched.append(asyncio.create_task(lease.keep()))
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if health.kopf_task.done():  # on SIGTERM/SIGINT (kopf's own handlers) or a crash
            failed = not health.kopf_task.cancelled() and health.kopf_task.exception()
            if failed:
                log.error("kopf stopped: %r", failed)
            code = 1 if failed else 0
        else:  # SIGTERM before kopf took the signals over, or leadership lost
            code = 0 if stopping.is_set() else 1
            kopf_stop.set()
            try:
                await asyncio.wait_for(health.kopf_task, settings.grace_seconds)
            except TimeoutError:
                log.error("kopf did not stop within %s s", settings.grace_seconds)
        return code
    finally:
        if lease is not None:
            await lease.release()
            await lease.kube.close()
        await kube.close()
        if runner is not None:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tether-operator")
    parser.add_argument("--namespace", action="append", help="watch only these (default all)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per live poll otherwise
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        print(f"tether-operator: invalid settings: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(asyncio.run(run(args.namespace or [], settings)))
    except CredentialsError as exc:
        print(f"tether-operator: cannot log in to the API server: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
