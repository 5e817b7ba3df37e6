"""Command-line entry: ``tether run``, ``tether trace`` and ``tether eval``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .eval_cmd import add_eval_commands

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tether", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an AgentTask locally under the harness")
    run.add_argument("task", type=Path, help="AgentTask YAML")
    run.add_argument("--state-dir", type=Path, required=True, help="stands in for the PVC")
    run.add_argument("--secrets-dir", type=Path, help="DIR/<secret>/<key> (default: "
                     "STATE_DIR/../secrets if it exists, else none)")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    run.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                     help="serve the sidecar's /metrics on 127.0.0.1:PORT, for a Prometheus "
                     "to scrape (default: a free port, printed at start)")
    trace = sub.add_parser("trace", help="render the span tree a run left in its state dir")
    trace.add_argument("state_dir", type=Path)
    add_eval_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "eval":
        return int(args.handler(args))
    if args.command == "run":
        from .run import run_task

        return run_task(args.task, args.state_dir, args.secrets_dir, quiet=args.quiet,
                        metrics_port=args.metrics_port)
    from .trace import render

    try:
        print(render(args.state_dir))
    except FileNotFoundError as exc:
        print(f"tether trace: {exc}", file=sys.stderr)
        return 2
    return 0
