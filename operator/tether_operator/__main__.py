"""``python -m tether_operator``: run the operator (kopf) with liveness and metrics endpoints.

    python -m tether_operator [--namespace NS ...] [--liveness-port 8080]
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf
from prometheus_client import start_http_server

from .handlers import register
from .kube import Kube
from .metrics import OperatorMetrics
from .reconcile import Reconciler
from .settings import OperatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tether-operator")
    parser.add_argument("--namespace", action="append", help="watch only these (default all)")
    parser.add_argument("--liveness-port", type=int, default=8080)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per live poll otherwise
    settings = OperatorSettings()
    metrics = OperatorMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    register(Reconciler(Kube(), settings, metrics))
    asyncio.run(kopf.operator(
        clusterwide=not args.namespace, namespaces=args.namespace or [],
        standalone=True,  # one active replica: see docs/operator.md (leader election)
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz",
    ))


if __name__ == "__main__":
    main()
