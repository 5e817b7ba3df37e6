"""All of issue #12's figures in one run: the lean sidecar's footprint and MCP added latency.

    cd /work/main && .venv/bin/python -m tests.bench.issue12            # the full run
    cd /work/main && .venv/bin/python -m tests.bench.issue12 --quick    # smoke (~1 minute)

Run from the repository root with the project's venv, on a quiet machine (the start-up and
latency figures are CPU-bound: nothing else running). The full run takes ~4 minutes on a quiet
2-core machine: 9 fresh starts, the 1,000-call conversation, the corpus replay, then 2,000 MCP
``tools/call`` per path. ``--baseline REV`` adds REV's sidecar to the footprint part (starts and
the 1,000 calls, interleaved); ``--compare-price`` adds starts without the price handed over.

What is measured, in this order, and how (docs/benchmarks.md says more):

* ``python -m tests.bench.sidecar_footprint`` (its ``measure``): start to ready (process spawn to
  the first ``/readyz`` 200, wall time, and the process's CPU time then, from /proc/PID/stat),
  the sidecar started as the operator starts it (price handed over); resident memory at rest and
  after 1,000 chat completions whose prompt stays near the context budget (32,000 tokens,
  compacted on every call once there, compactions counted from the sidecar's metric); the
  token estimate against the tokenizer on the generated corpus, and against the usage the
  upstream reported in that run.
* ``python -m tests.bench.mcp_latency`` (its ``run``): the added latency of ``tools/call``
  through the sidecar against the same call direct to the MCP server (and against a bare relay).

Prints both parts' tables, then a markdown table of the figures against the goals, and as its
last line one JSON object: ``{"goals": …, "footprint": …, "mcp": …}`` (also written to
``_out/bench/issue12.json``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from . import mcp_latency, sidecar_footprint

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_out" / "bench" / "issue12.json"


def goals(fp: dict[str, Any], mcp: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue #12 with the figure measured for it."""
    tree = fp["variants"]["tree"]
    s, lr = tree["start_to_ready"], tree["long_run"]
    ce = fp["corpus_error"]
    near = ce["anchored_from_8000_tokens"]
    return [
        {"goal": "resident memory after 1,000 calls near the budget ≤ 96 MB",
         "value": round(lr["rss_after_mb"], 1), "met": lr["rss_after_mb"] <= 96,
         "detail": f"at rest {lr['rss_at_rest_mb']:.1f} MB, peak {lr['peak_mb']:.1f} MB, "
                   f"{lr['compactions']:.0f} compactions in {lr['llm_calls']} calls, tokenizer "
                   f"loaded: {lr['tokenizer_loaded']}"},
        {"goal": "start to ready ≤ 300 ms (wall, median)", "value": round(s["median_ms"]),
         "met": s["median_ms"] <= 300,
         "detail": f"[{s['min_ms']:.0f}, {s['max_ms']:.0f}] ms over {s['runs']} starts; CPU "
                   f"{s['cpu_median_ms']:.0f} [{s['cpu_min_ms']:.0f}, {s['cpu_max_ms']:.0f}] ms"},
        {"goal": "token estimate within 2 % of the tokenizer: whole prompts near a budget "
                 "(anchored, ≥ 8,000 tokens), max", "value": round(100 * near["max_abs"], 2),
         "met": near["max_abs"] <= 0.02,
         "detail": f"mean {100 * near['mean_abs']:.2f} %, n={near['n']}; every anchored call: "
                   f"mean {100 * ce['anchored']['mean_abs']:.2f} %, max "
                   f"{100 * ce['anchored']['max_abs']:.2f} %; first call of a conversation: "
                   f"mean {100 * ce['first_call']['mean_abs']:.2f} %, max "
                   f"{100 * ce['first_call']['max_abs']:.2f} %"},
        {"goal": "MCP tools/call added p50 ≤ 1 ms", "value": round(mcp["added_ms"]["p50"], 3),
         "met": mcp["added_ms"]["p50"] <= 1.0,
         "detail": f"own work p50 {mcp['own_work_ms']['p50']:.3f} ms, added min "
                   f"{mcp['added_ms']['min']:.3f} ms, direct p50 "
                   f"{mcp['stats_ms']['direct']['p50']:.3f} ms"},
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.issue12",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 calls, 3 starts, 300 MCP calls")
    p.add_argument("--baseline", help="a git revision whose sidecar is measured alongside")
    p.add_argument("--compare-price", action="store_true",
                   help="also starts without the price handed over (as an older operator)")
    args = p.parse_args(argv)
    calls, starts, mcp_calls = (200, 3, 300) if args.quick else (1000, 9, 2000)
    fp = sidecar_footprint.measure(calls, starts, args.baseline, args.compare_price)
    sidecar_footprint.print_table(fp)
    mcp = mcp_latency.run(mcp_calls)
    mcp_latency.print_table(mcp)
    rows = goals(fp, mcp)
    print(f"\n| goal (issue #12) | measured | met | detail |  load {os.getloadavg()[0]:.1f}")
    print("|---|--:|---|---|")
    for row in rows:
        print(f"| {row['goal']} | {row['value']} | {'yes' if row['met'] else 'no'} | "
              f"{row['detail']} |")
    result = {"quick": args.quick, "goals": rows, "footprint": fp, "mcp": mcp}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
