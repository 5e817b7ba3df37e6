"""The sidecar's footprint: start to ready, resident memory at rest and after 1,000 calls near the
context budget, and the token estimate's error against the tokenizer on the corpus.

    python -m tests.bench.sidecar_footprint                   # full run (~3 minutes)
    python -m tests.bench.sidecar_footprint --baseline REV    # REV's sidecar too, same run
    python -m tests.bench.sidecar_footprint --quick           # 200 calls, 3 starts (smoke)
    python -m tests.bench.sidecar_footprint --compare-price   # also starts as an older operator's

The working tree's sidecar is started as the operator starts it: with the model's price resolved
(TETHER_SIDECAR_MODEL_PRICE, tether_sidecar/pricing.py), from bytecode as in the image (one
discarded start per variant compiles it under the run's own PYTHONPYCACHEPREFIX; this editable
venv has none, and the machine may set PYTHONDONTWRITEBYTECODE). All of issue #12's figures in
one run, MCP latency included: tests/bench/issue12.py.

Run from the repository root with the project's venv. ``--baseline`` extracts ``sidecar/`` and
``api/`` at REV (``git archive``) under _out/bench/ and runs them with the same upstream, task and
client, interleaved with the working tree's (starts alternate). The upstream double
(tests/sidecar/_counting_model.py) runs in this process and reports ``usage.prompt_tokens``
counted with o200k_base, as a provider would. The task: gpt-4o, ``contextBudget.maxTokens``
32000 (compaction at 0.8), strategy summarize. The agent resends its whole history, one step
(the model's tool call and a tool result from tests/bench/_corpus.py) longer each call, so the
prompt reaches the budget after a few dozen calls and stays near it, compacted.

Prints a table, then one JSON object as the last line (also _out/bench/sidecar_footprint.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.sidecar import _counting_model
from tests.sidecar.proc import Sidecar, task_doc
from tether_api import ModelSpec
from tether_sidecar.pricing import resolve

from ._estimate_error import corpus_error
from ._footprint import agent_run, estimate_vs_reported, memory, start_to_ready, tokenizer_loaded

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_out" / "bench" / "sidecar_footprint.json"
BUDGET = 32000


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True,
                          timeout=60).stdout.strip()


def baseline_env(rev: str) -> dict[str, str]:
    """PYTHONPATH that runs REV's sidecar and API packages instead of the working tree's."""
    commit = _git("rev-parse", "--short", rev)
    where = ROOT / "_out" / "bench" / f"footprint-{commit}"
    if not (where / "sidecar").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "sidecar", "api"], cwd=ROOT,
                                 capture_output=True, check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True, timeout=60)
    return {"PYTHONPATH": f"{where / 'sidecar'}:{where / 'api'}"}


def import_time(env: dict[str, str], runs: int = 1) -> dict[str, Any]:
    """``python -X importtime -c 'import tether_sidecar.cli, tether_sidecar.app'`` (what start-up
    imports, before and after cli.py deferred its imports): total and the largest packages."""
    totals: list[int] = []
    top: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                               "import tether_sidecar.cli, tether_sidecar.app"],
                              capture_output=True, text=True,
                              env={**os.environ, **env}, cwd=tempfile.gettempdir(), check=True)
        rows = [line.split("|") for line in done.stderr.splitlines()
                if line.startswith("import time:") and "cumulative" not in line]
        for _, cumulative, name in rows:
            if len(name) - len(name.lstrip()) <= 3:  # top-level packages and their children
                top[name.strip()] = max(top.get(name.strip(), 0), int(cumulative))
        totals.append(sum(int(c) for _, c, n in rows if n.strip() in ("tether_sidecar.cli",
                                                                      "tether_sidecar.app")))
    largest = sorted(top.items(), key=lambda kv: -kv[1])[:12]
    return {"median_ms": statistics.median(totals) / 1000,
            "largest_ms": {k: round(v / 1000, 1) for k, v in largest}}


def long_run(work: Path, url: str, env: dict[str, str], calls: int) -> dict[str, Any]:
    doc = task_doc(url, costEnvelope={"softLimitUSD": "50000.00", "hardLimitUSD": "100000.00"},
                   contextBudget={"maxTokens": BUDGET})
    sc = Sidecar(work, doc, env={"OTEL_BSP_SCHEDULE_DELAY": "5000", **env}).start(timeout=60)
    try:
        assert sc.proc is not None
        rest = memory(sc.proc.pid)
        loaded_at_rest = tokenizer_loaded(sc.proc.pid)
        run = agent_run(sc, calls)
        after = memory(sc.proc.pid)
        return {"rss_at_rest_mb": rest["VmRSS"], "tokenizer_at_rest": loaded_at_rest,
                "rss_after_mb": after["VmRSS"], "peak_mb": after["VmHWM"],
                "tokenizer_loaded": tokenizer_loaded(sc.proc.pid),
                "compactions": sc.metric("tether_context_compactions_total"),
                "llm_calls": sc.status()["llmCalls"], "estimate_vs_reported":
                    estimate_vs_reported(sc, int(BUDGET * 0.8)), **run}
    finally:
        sc.stop()


def operator_env(doc: dict[str, Any]) -> dict[str, str]:
    """What the operator hands a sidecar besides its flags: the model's price, resolved from
    genai-prices (manifests.py), so start-up does not load genai-prices itself."""
    price = resolve(ModelSpec.model_validate(doc["spec"]["model"]))
    return {} if price is None else {"TETHER_SIDECAR_MODEL_PRICE": price}


def measure(calls: int = 1000, starts: int = 9, baseline: str | None = None,
            compare_price: bool = False) -> dict[str, Any]:
    """The footprint as a JSON-able dict (also called by tests/bench/issue12.py)."""
    result: dict[str, Any] = {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_sidecar_files": _git("status", "--porcelain", "sidecar", "api").splitlines(),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": os.getloadavg()},
        "budget_tokens": BUDGET, "variants": {}}
    from tether_examples._serve import serve_in_thread

    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp, \
            serve_in_thread(_counting_model.build_app()) as url:
        work = Path(tmp)
        doc = task_doc(url)
        # name -> (environment, whether the 1,000-call run is made for it too)
        variants: dict[str, tuple[dict[str, str], bool]] = {"tree": (operator_env(doc), True)}
        if compare_price:  # an older operator: the sidecar resolves the price at start-up
            variants["tree, price resolved at start-up"] = ({}, False)
        if baseline:  # an older sidecar knows no TETHER_SIDECAR_MODEL_PRICE: none is passed
            variants[f"baseline {baseline}"] = (baseline_env(baseline), True)
        # As in the image, where pip compiled everything at install: the sources are read as
        # bytecode. This venv installs tether editable and the machine sets
        # PYTHONDONTWRITEBYTECODE, so without this every start would compile tether_sidecar
        # and tether_api again (~13 % of start-up's instructions). One discarded start per
        # variant writes the bytecode under the run's own prefix.
        compiled = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        variants = {name: ({**env, **compiled}, long) for name, (env, long) in variants.items()}
        for name, (env, _) in variants.items():
            start_to_ready(work / f"{name}-warm", doc, 1, env)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        imports: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for i in range(starts):  # interleaved, so drift on a shared machine hits all alike
            for name, (env, _) in variants.items():
                runs[name].append(start_to_ready(work / f"{name}-{i}", doc, 1, env))
                imports[name].append(import_time(env))
        for name, (env, long) in variants.items():
            ms = sorted(t for s in runs[name] for t in s["all_ms"])
            cpu = sorted(c for s in runs[name] for c in s["cpu_ms"])
            imp = sorted(i["median_ms"] for i in imports[name])
            result["variants"][name] = {
                "env": sorted(env), "start_to_ready": {
                    "runs": len(ms), "median_ms": statistics.median(ms), "min_ms": ms[0],
                    "max_ms": ms[-1], "all_ms": ms, "cpu_median_ms": statistics.median(cpu),
                    "cpu_min_ms": cpu[0], "cpu_max_ms": cpu[-1], "cpu_ms": cpu},
                "import": {"median_ms": statistics.median(imp), "all_ms": imp,
                           "largest_ms": imports[name][-1]["largest_ms"]}}
            if long:
                result["variants"][name]["long_run"] = long_run(work / f"{name}-long", url,
                                                                env, calls)
    result["corpus_error"] = corpus_error()
    result["machine"]["loadavg_end"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--starts", type=int, default=9, help="start-to-ready runs per variant")
    p.add_argument("--baseline", help="a git revision whose sidecar is measured alongside")
    p.add_argument("--compare-price", action="store_true",
                   help="also starts without the price handed over (as an older operator)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.starts = 200, 3
    result = measure(args.calls, args.starts, args.baseline, args.compare_price)
    print_table(result)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, separators=(",", ":")))


def print_table(r: dict[str, Any]) -> None:
    print(f"commit {r['commit']}  budget {r['budget_tokens']} tokens  "
          f"load {r['machine']['loadavg_start'][0]:.1f}")
    print("| variant | start→ready median [min, max] ms | CPU to ready median [min, max] ms | "
          "import ms | RSS at rest MB | RSS after N calls MB | peak MB | tokenizer loaded | "
          "compactions |")
    print("|---|--:|--:|--:|--:|--:|--:|---|--:|")
    for name, v in r["variants"].items():
        s, lr = v["start_to_ready"], v.get("long_run")
        cells = ["—"] * 5 if lr is None else [
            f"{lr['rss_at_rest_mb']:.1f}", f"{lr['rss_after_mb']:.1f} ({lr['calls']})",
            f"{lr['peak_mb']:.1f}", str(lr["tokenizer_loaded"]), f"{lr['compactions']:.0f}"]
        print(f"| {name} | {s['median_ms']:.0f} [{s['min_ms']:.0f}, {s['max_ms']:.0f}] | "
              f"{s['cpu_median_ms']:.0f} [{s['cpu_min_ms']:.0f}, {s['cpu_max_ms']:.0f}] | "
              f"{v['import']['median_ms']:.0f} | " + " | ".join(cells) + " |")
    for name, v in r["variants"].items():
        near = (v.get("long_run") or {}).get("estimate_vs_reported", {}).get(
            "from_half_threshold", {})
        if near.get("n"):
            print(f"{name}: estimate vs reported usage from half the threshold: n={near['n']} "
                  f"mean {100 * near['mean']:+.2f} % [{100 * near['min']:+.2f}, "
                  f"{100 * near['max']:+.2f}] under {100 * near['under_share']:.1f} %")
    ce = r["corpus_error"]
    for key in ("anchored", "anchored_from_8000_tokens", "first_call", "whole_prompt_unanchored"):
        e = ce[key]
        print(f"estimate error {key}: n={e['n']} mean |err| {100 * e['mean_abs']:.2f} % "
              f"max |err| {100 * e['max_abs']:.2f} % under {100 * e['under_share']:.1f} %")


if __name__ == "__main__":
    main()
