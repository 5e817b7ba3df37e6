"""``tether eval report`` (a policy's failing samples grouped by failure pattern) and ``tether
eval export`` (those samples as AgentTasks for ``tether run``), from the evaluator's store
(tether_eval.report and tether_eval.export say how)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["add_export", "add_report"]


def add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report", help="a policy's failing samples grouped by failure pattern",
        description="Reads the evaluator's store and prints the policy's failed and "
        "judge_failed samples grouped by pattern (verdict, failed checks, the judge's reason "
        "with values folded), largest group first, with examples. Reasons are as stored: "
        "redacted.")
    report.add_argument("--database", required=True, help="the evaluator's store: "
                        "sqlite:///PATH or postgresql://… (TETHER_EVAL_DATABASE)")
    report.add_argument("--policy", required=True, help="the EvaluationPolicy's name")
    report.add_argument("--examples", type=int, default=3, help="examples per group")
    report.add_argument("--json", action="store_true", help="one JSON object instead of text")
    report.set_defaults(handler=_run)


async def _failing(database: str, policy: str) -> list[dict[str, Any]]:
    from tether_eval.store import Store

    store = await Store.open(database)
    try:
        return await store.failing(policy)
    finally:
        await store.close()


def _run(args: argparse.Namespace) -> int:
    from tether_eval.report import group

    try:
        failing = asyncio.run(_failing(args.database, args.policy))
    except Exception as exc:  # noqa: BLE001 - any driver's error, named for the user
        print(f"tether eval report: cannot read the store {args.database}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    groups = group(failing, args.examples)
    if args.json:
        print(json.dumps({"policy": args.policy, "failing": len(failing), "groups": groups}))
        return 0
    print(f"policy {args.policy}: {len(failing)} failing sample(s) in {len(groups)} pattern(s)")
    for g in groups:
        checks = ", ".join(g["failedChecks"]) or "none"
        print(f"\n{g['count']:>5} x {g['verdict']}  (checks failed: {checks})\n"
              f"      {g['pattern']}")
        for e in g["examples"]:
            print(f"      - {e['task']} (uid {e['uid']}, attempt {e['attempt']}): {e['reason']}")
    return 0


def add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="a policy's failing samples as AgentTasks for tether run",
        description="Writes one AgentTask YAML per failing sample of the policy into --out: "
        "the --template AgentTask's spec with the sample's own (redacted) instructions and "
        "inputs, so `tether run FILE` runs the case again; and cases.jsonl listing them.")
    export.add_argument("--database", required=True, help="the evaluator's store")
    export.add_argument("--policy", required=True, help="the EvaluationPolicy's name")
    export.add_argument("--template", type=Path, required=True,
                        help="an AgentTask YAML: agent, model, tools and limits for the cases")
    export.add_argument("--out", type=Path, required=True, help="directory to write into")
    export.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from tether_api import InvalidAgentTask
    from tether_eval.export import cases

    try:
        template = yaml.safe_load(args.template.read_text())
        failing = asyncio.run(_failing(args.database, args.policy))
        made, skipped = cases(failing, template, args.policy)
    except (OSError, yaml.YAMLError, InvalidAgentTask) as exc:
        print(f"tether eval export: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    index = []
    for name, doc in made:
        (args.out / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        index.append({"file": name, **doc["metadata"]["labels"],
                      "source": doc["metadata"]["annotations"]["tether.dev/eval-source"]})
    index += [{"skipped": s} for s in skipped]
    (args.out / "cases.jsonl").write_text("".join(json.dumps(i) + "\n" for i in index))
    print(f"tether eval export: {len(made)} case(s) written to {args.out}, "
          f"{len(skipped)} skipped (see cases.jsonl)")
    return 0
