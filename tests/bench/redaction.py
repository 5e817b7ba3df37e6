"""Redaction benchmark: what each engine finds on the labelled corpus, and what a record costs.

    .venv/bin/python -m tests.bench.redaction [--quick] [--no-install]

Engines, each in a fresh interpreter (tests/bench/_redaction_peers.py): ``tether`` (the
redactor: Presidio's recognizers and our secret patterns), ``presidio`` (Presidio's recognizers
alone) and ``datafog`` (its regex engine, from a venv of its own, installed on first run).

1. Recall per planted kind and precision per reported type on the seeded corpus
   (tests/bench/redaction_corpus.py; PERSON needs a named-entity model none of them loads).
2. Cost per record of 1, 10 and 100 KB: median, quartiles, extremes, microseconds per KB; wall
   time and the process's CPU time (the engine runs single-threaded here, so CPU time is its
   work, less moved by whatever else the machine runs).
3. Load: import and build time, resident memory before and after (``tether`` measures on top
   of an imported ``tether_sidecar.app``), and the install size of what the engine adds.
4. A real sidecar (tests/bench/_redaction_sidecar.py): resident memory at ready and after the
   first evaluation record of a task, whose redaction loads the engine.
5. Failing closed: seconds from handing over a record that outruns its budget to the
   ``RedactionFailed`` (budget 1 s), and how the event loop that awaits it keeps ticking
   (1 ms sleeps: count and worst gap) while the engine works in its thread.

Tables on stdout; the last line is one JSON object (also _out/bench/redaction.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from tether_sidecar.redact import Limits, RedactionFailed, Redactor

from ._redaction_peers import ensure_datafog, run_engine
from ._redaction_sidecar import sidecar_memory
from .redaction_corpus import generate, score

ROOT = Path(__file__).resolve().parents[2]
SIZES_KB = (1, 10, 100)


def _records(size_kb: int, count: int, seed: int) -> list[str]:
    texts = [s.text for s in generate(count * size_kb * 12, seed=seed)]
    out, i = [], 0
    for _ in range(count):
        parts: list[str] = []
        while sum(map(len, parts)) < size_kb * 1024:
            parts.append(texts[i % len(texts)])
            i += 1
        out.append("\n".join(parts)[: size_kb * 1024])
    return out


def _cost(runs: list[float], size_kb: int) -> dict[str, float]:
    q = statistics.quantiles(runs, n=4, method="inclusive") if len(runs) > 1 else runs * 3
    med = statistics.median(runs)
    return {"n": len(runs), "median_ms": med * 1e3, "p25_ms": q[0] * 1e3, "p75_ms": q[2] * 1e3,
            "min_ms": min(runs) * 1e3, "max_ms": max(runs) * 1e3,
            "us_per_kb": med * 1e6 / size_kb}


def _closure(name: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    key = name.lower().replace("_", "-")
    if key in seen:
        return seen
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return seen
    seen.add(key)
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            _closure(req.name, seen)
    return seen


def _install_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        for f in metadata.distribution(name).files or []:
            path = Path(str(f.locate()))
            total += path.stat().st_size if path.is_file() else 0
    return total / 2**20


def added_install() -> dict[str, Any]:
    """Distributions presidio-analyzer brings that the sidecar's other dependencies do not."""
    others: set[str] = set()
    for line in metadata.distribution("tether").requires or []:
        req = Requirement(line)
        if req.name != "presidio-analyzer" and (req.marker is None or req.marker.evaluate(
                {"extra": ""})):
            _closure(req.name, others)
    added = _closure("presidio-analyzer") - others
    return {"distributions": sorted(added), "mb": round(_install_mb(added), 1)}


def fail_closed() -> dict[str, float]:
    """A record that outruns a 1 s budget, awaited from an event loop that keeps ticking."""
    slow = " ".join(f"{i % 997:03d} {i % 89:02d}" for i in range(50_000))  # ~400 KB of digits
    redactor = Redactor(Limits(budget_s=1.0))
    redactor.load()

    async def run() -> dict[str, float]:
        t = last = time.perf_counter()
        task, gaps = asyncio.ensure_future(redactor.redact_json_async(slow)), [0.0]
        while not task.done():
            await asyncio.sleep(0.001)
            gaps.append(time.perf_counter() - last)
            last = time.perf_counter()
        try:
            task.result()
        except RedactionFailed as exc:
            if exc.reason != "timeout":
                raise
            return {"seconds": time.perf_counter() - t, "loop_ticks": len(gaps) - 1,
                    "loop_worst_gap_ms": max(gaps) * 1e3}
        raise AssertionError("the slow record was redacted within 1 s: make it slower")

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller corpus, fewer records")
    ap.add_argument("--no-install", action="store_true", help="skip datafog if not installed")
    ap.add_argument("--out", default=str(ROOT / "_out" / "bench" / "redaction.json"))
    args = ap.parse_args()
    samples = generate(300 if args.quick else 1000, seed=10)
    counts = {1: 8, 10: 4, 100: 2} if args.quick else {1: 30, 10: 15, 100: 5}
    corpus = {"texts": [s.text for s in samples],
              "records": {str(k): _records(k, counts[k], seed=11 + k) for k in SIZES_KB}}
    engines: dict[str, Path | None] = {"tether": Path(sys.executable),
                                       "presidio": Path(sys.executable)}
    engines["datafog"], why = ensure_datafog(install=not args.no_install)
    result: dict[str, Any] = {"corpus": {"samples": len(samples), "seed": 10}, "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpus.json"
        corpus_file.write_text(json.dumps(corpus))
        for name, python in engines.items():
            if python is None:
                result["engines"][name] = {"skipped": why}
                continue
            raw = run_engine(name, python, corpus_file)
            by_text = dict(zip(corpus["texts"], raw["spans"], strict=True))
            result["engines"][name] = {
                **score(samples, lambda t, by_text=by_text: by_text[t]),
                "cost": {f"{k}KB": _cost(raw["timings"][str(k)], k) for k in SIZES_KB},
                "cpu": {f"{k}KB": _cost(raw["cpu"][str(k)], k) for k in SIZES_KB},
                "load_s": raw["load_s"], "rss_base_mb": raw["rss_base_mb"],
                "rss_added_mb": raw["rss_loaded_mb"] - raw["rss_base_mb"],
                "rss_after_mb": raw["rss_after_mb"]}
    result["install_added"] = added_install()
    result["fail_closed_at_1s_budget"] = fail_closed()
    result["sidecar"] = sidecar_memory()
    _render(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


def _render(result: dict[str, Any]) -> None:
    engines = {k: v for k, v in result["engines"].items() if "recall" in v}
    kinds = sorted({k for v in engines.values() for k in v["recall"]})
    print("\nRecall per planted kind (share of planted values wholly redacted)")
    print(f"{'kind':20}" + "".join(f"{e:>10}" for e in engines))
    for kind in kinds:
        print(f"{kind:20}" + "".join(f"{v['recall'].get(kind, 0):10.2f}"
                                     for v in engines.values()))
    print("\nPrecision per reported type (share of spans over a planted value)")
    for name, v in engines.items():
        print(f"  {name}: " + ", ".join(f"{k} {p:.2f} ({v['reported'][k]})"
                                       for k, p in v["precision"].items()))
    print("\nCost per record: median ms [p25-p75] (us per KB); load s; resident MB added")
    for name, v in engines.items():
        cost = "  ".join(f"{k} {c['median_ms']:.1f} [{c['p25_ms']:.1f}-{c['p75_ms']:.1f}]"
                         f" ({c['us_per_kb']:.0f})" for k, c in v["cost"].items())
        print(f"  {name:9} {cost}  load {v['load_s']:.2f} s  +{v['rss_added_mb']:.1f} MB")
    print("CPU time per record (process time: less moved by the machine's other load)")
    for name, v in engines.items():
        cost = "  ".join(f"{k} {c['median_ms']:.1f} [{c['p25_ms']:.1f}-{c['p75_ms']:.1f}]"
                         f" ({c['us_per_kb']:.0f})" for k, c in v["cpu"].items())
        print(f"  {name:9} {cost}")
    print(f"\nInstall added by presidio-analyzer: {result['install_added']['mb']} MB "
          f"({len(result['install_added']['distributions'])} distributions)")
    sc = result["sidecar"]
    print(f"A real sidecar: {sc['ready_rss_mb']:.1f} MB resident at ready, "
          f"{sc['after_rss_mb']:.1f} MB after its first record (peak {sc['after_peak_mb']:.1f})")
    fc = result["fail_closed_at_1s_budget"]
    print(f"Fail closed at a 1 s budget after {fc['seconds']:.2f} s; the event loop ticked "
          f"{fc['loop_ticks']} times meanwhile, worst gap {fc['loop_worst_gap_ms']:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
