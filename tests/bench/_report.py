"""Turn raw latencies into the figures the issue asks for, and print them as tables.

Added latency is a target's percentile minus the direct call's, from the same run. The "paired"
figure is the median, over rounds, of (target's block median - direct's block median in that same
round): blocks run back to back, so machine noise that comes and goes cancels in the difference.
Tether's own work is the sidecar minus the bare pass-through proxy on the same stack, the same two
ways; the LiteLLM ratio is LiteLLM's added latency over the sidecar's.
"""

from __future__ import annotations

import statistics
from typing import Any

from ._measure import summary

__all__ = ["build", "render", "render_profile"]

GOAL = {"own_work_p50_ms": 0.15, "litellm_over_sidecar_added_p50": 10.0}
OURS, BARE, PEER = "sidecar", "bare-proxy", "litellm"


def _paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Median and interquartile range over rounds of (a's block median - b's, same round)."""
    pairs = [x - y for x, y in zip(a, b, strict=False)]
    if len(pairs) < 2:
        return {}
    q = statistics.quantiles(pairs, n=4, method="inclusive")
    return {"median": statistics.median(pairs), "iqr": [q[0], q[2]], "rounds": len(pairs)}


def _own_work(seq: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    ours, bare = seq.get(OURS, {}), seq.get(BARE, {})
    if "p50" not in ours or "p50" not in bare:
        return {}
    out = {"p50_ms": ours["p50"] - bare["p50"], "p99_ms": ours["p99"] - bare["p99"],
           "paired_p50_ms": _paired(raw["round_p50_ms"].get(OURS, []),
                                            raw["round_p50_ms"].get(BARE, []))}
    peer = seq.get(PEER, {})
    if "added_p50_ms" in peer and ours.get("added_p50_ms", 0) > 0:
        out["litellm_over_sidecar_added_p50"] = peer["added_p50_ms"] / ours["added_p50_ms"]
        out["litellm_over_sidecar_added_p99"] = peer["added_p99_ms"] / ours["added_p99_ms"]
    return out


def _sequential(raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": raw["rounds"]}
    direct = summary(raw["latency_ns"].get("direct", []))
    direct_rounds = raw["round_p50_ms"].get("direct", [])
    for name in names:
        if name not in raw["latency_ns"]:
            continue
        s = summary(raw["latency_ns"][name])
        if name != "direct" and "p50" in s and "p50" in direct:
            s["added_p50_ms"] = s["p50"] - direct["p50"]
            s["added_p99_ms"] = s["p99"] - direct["p99"]
            s["ratio_p50"] = s["p50"] / direct["p50"]
            paired = _paired(raw["round_p50_ms"][name], direct_rounds)
            if paired:
                s["paired_added_p50_ms"] = paired["median"]
                s["paired_added_p50_iqr_ms"] = paired["iqr"]
        out[name] = s
    return out


def _concurrent(raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        secs = raw["seconds"].get(name, 0.0)
        if not secs:
            continue
        s = summary(raw["latency_ns"][name])
        out[name] = {"calls": raw["calls"][name], "seconds": secs,
                     "req_per_s": raw["calls"][name] / secs,
                     "p50": s.get("p50"), "p99": s.get("p99")}
    return out


def build(info: dict[str, Any], results: dict[str, Any], names: list[str]) -> dict[str, Any]:
    doc = dict(info)
    doc["sequential"] = {size: _sequential(raw, names)
                         for size, raw in results["sequential"].items()}
    doc["concurrent"] = {size: _concurrent(raw, names)
                         for size, raw in results["concurrent"].items()}
    doc["own_work"] = {size: _own_work(doc["sequential"][size], raw)
                       for size, raw in results["sequential"].items()}
    verdict: dict[str, Any] = {"goal": GOAL}
    for size, own in doc["own_work"].items():
        paired = own.get("paired_p50_ms", {}).get("median")
        verdict[size] = {
            "own_work_p50_ok": paired is not None and paired <= GOAL["own_work_p50_ms"],
            "litellm_ratio_ok": own.get("litellm_over_sidecar_added_p50", 0.0)
            >= GOAL["litellm_over_sidecar_added_p50"]}
    doc["verdict"] = verdict
    return doc


def _f(v: Any, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def render(doc: dict[str, Any]) -> str:
    """A Markdown table per body size (readable in a terminal too)."""
    lines = []
    for size, seq in doc["sequential"].items():
        conc = doc["concurrent"].get(size, {})
        lines += [f"\n### {size} request body (ms; sequential n per target, then "
                  f"{doc['concurrency']} in flight)\n",
                  "| target | n | p50 | p90 | p99 | mean | stdev | added p50 | added p99 "
                  "| x direct p50 | paired added p50 [IQR] | req/s @32 | p50 @32 | p99 @32 |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for name, s in seq.items():
            if name == "rounds":
                continue
            c = conc.get(name, {})
            iqr = s.get("paired_added_p50_iqr_ms")
            paired = (f"{_f(s.get('paired_added_p50_ms'))} [{_f(iqr[0])}, {_f(iqr[1])}]"
                      if iqr else "-")
            lines.append(
                f"| {name} | {s.get('n', 0)} | {_f(s.get('p50'))} | {_f(s.get('p90'))} | "
                f"{_f(s.get('p99'))} | {_f(s.get('mean'))} | {_f(s.get('stdev'))} | "
                f"{_f(s.get('added_p50_ms'))} | {_f(s.get('added_p99_ms'))} | "
                f"{_f(s.get('ratio_p50'), '.2f')} | {paired} | {_f(c.get('req_per_s'), '.0f')} | "
                f"{_f(c.get('p50'))} | {_f(c.get('p99'))} |")
    m = doc["machine"]
    lines.append(f"\nMachine: {m['nproc']} CPUs ({m['affinity']} usable), Python {m['python']}, "
                 f"{m['platform']}; load average {m['loadavg_start']} at start, "
                 f"{m.get('loadavg_end')} at end")
    lines.append(f"LiteLLM: {doc['litellm']}")
    for name, facts in doc.get("sidecar_facts", {}).items():
        lines.append(f"{name} accounted: {facts}")
    for size, own in doc.get("own_work", {}).items():
        paired = own.get("paired_p50_ms", {})
        iqr = paired.get("iqr", [None, None])
        lines.append(
            f"Tether's own work ({size}, sidecar - bare-proxy): p50 {_f(own.get('p50_ms'))} ms, "
            f"p99 {_f(own.get('p99_ms'))} ms, paired p50 {_f(paired.get('median'))} "
            f"[{_f(iqr[0])}, {_f(iqr[1])}] over {paired.get('rounds', 0)} rounds; LiteLLM adds "
            f"{_f(own.get('litellm_over_sidecar_added_p50'), '.1f')}x (p50), "
            f"{_f(own.get('litellm_over_sidecar_added_p99'), '.1f')}x (p99) the sidecar's")
    lines.append(f"Verdict: {doc['verdict']}")
    if doc.get("errors"):
        lines.append(f"ERRORS (targets dropped mid-phase): {doc['errors']}")
    return "\n".join(lines)


def render_profile(doc: dict[str, Any]) -> str:
    lines = []
    spy = doc.get("py-spy")
    if isinstance(spy, dict):
        for size, p in spy.items():
            lines += [f"\n### py-spy, {size}: {p['cpu_us_per_call']} µs CPU per call "
                      f"(all threads; {p['calls']} calls in {p['window_s']:.2f} s)",
                      "| self µs/call | function |", "|--:|---|"]
            lines += [f"| {us} | {fn} |" for fn, us in p["top_self_us"][:20]]
            lines += ["", "| inclusive µs/call | function |", "|--:|---|"]
            lines += [f"| {us} | {fn} |" for fn, us in p["top_inclusive_us"][:40]]
    else:
        lines.append(f"py-spy: {spy}")
    for size, rows in doc.get("cprofile", {}).items():
        lines += [f"\n### cProfile (event-loop thread, instrumented), {size}",
                  "| function | ncalls | tottime µs/call | cumtime µs/call |", "|---|--:|--:|--:|"]
        lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows[:25]]
    return "\n".join(lines)
