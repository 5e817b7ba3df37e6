"""What tracing to a real backend, and being scraped by a real Prometheus, add to the sidecar's
latency per model call and per tool call (issue #11).

    python -m tests.bench.trace_overhead [--calls N] [--block B] [--quick]

Starts the bench's fast upstream (tests/bench/_upstream.py, its own process), a Jaeger
(tests/_obs.py: OTLP/HTTP in, memory storage) and four sidecars on 127.0.0.1, alike but for:

- ``off``: no ``otlpEndpoint`` (spans go to the JSONL file only, as every sidecar's do);
- ``off-b``: the same again, a second process: the A/A control, the spread between two
  identical sidecars that any other difference must clear;
- ``otlp``: ``observability.otlpEndpoint`` at the Jaeger (the SDK's batch processor with its
  production 5 s schedule, exporting in its own thread);
- ``scraped``: no endpoint, its ``/metrics`` scraped every second by a Prometheus
  (tests/_obs.py) for the whole run.

From this one client process, one call at a time, the same 1 KB request to each target in
rotating blocks (tests/bench/_measure.py: A, B, C… then B, C…, A, so drift on the shared machine
lands on every arm alike): model calls (``POST /v1/chat/completions``), then tool calls
(``POST /tools/search``, the tool being the same upstream; ``toolIO`` at its default,
``redacted``, so each tool span also carries the shapes of both bodies). ``direct`` is the
upstream itself. Per arm: p50/p90/p99, added p50 over direct, and the paired figure: over
rounds, the median (and interquartile range) of the arm's block median minus another arm's in
the same round. Afterwards it checks that the spans reached Jaeger and the scrapes happened.
Prints a table and writes ``_out/bench/trace_overhead.json``. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests._obs import Jaeger, get_json, jaeger, prometheus, wait_for
from tests.sidecar.proc import Sidecar, task_doc

from ._http import request_bytes
from ._measure import HOST, Target, sequential, summary
from ._report import _paired
from .sidecar_latency import _stop, body_of, machine, start_helper, tree

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_out" / "bench" / "trace_overhead.json"
ARMS = ("off", "off-b", "otlp", "scraped")
# What each comparison sets against what: (name, arm, baseline).
PAIRS = (("tracing (otlp - off)", "otlp", "off"), ("scraping (scraped - off)", "scraped", "off"),
         ("control (off-b - off)", "off-b", "off"))


@dataclass
class PathTarget(Target):
    path: str = "/v1/chat/completions"

    def request(self, body: bytes) -> bytes:
        return request_bytes(HOST, self.port, self.path, body)


def start_sidecars(work: Path, up_port: int, backend: Jaeger) -> dict[str, Sidecar]:
    tool = {"name": "search", "url": f"http://127.0.0.1:{up_port}/v1/chat/completions"}
    out = {}
    for arm in ARMS:
        obs = {"otlpEndpoint": backend.otlp_http} if arm == "otlp" else {}
        doc = task_doc(f"http://127.0.0.1:{up_port}", tools=[tool], observability=obs,
                       costEnvelope={"softLimitUSD": "50000.00", "hardLimitUSD": "100000.00"})
        # The production span export interval (the test helper shortens it to 50 ms).
        out[arm] = Sidecar(work / arm, doc, env={"OTEL_BSP_SCHEDULE_DELAY": "5000"}).start(60)
    return out


def targets(up_port: int, sidecars: dict[str, Sidecar], path: str) -> list[Target]:
    found: list[Target] = [PathTarget("direct", up_port)]
    for arm, sc in sidecars.items():
        found.append(PathTarget(arm, int(sc.url.rsplit(":", 1)[1]), path=path))
    return found


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Per arm: the latency summary, its added p50 over direct; per pair: the paired figure and
    the ratio of the two arms' added p50s."""
    lat, rounds = raw["latency_ns"], raw["round_p50_ms"]
    arms: dict[str, Any] = {name: summary(v) for name, v in lat.items()}
    for name, s in arms.items():
        if name != "direct" and "p50" in s and "p50" in arms["direct"]:
            s["added_p50_ms"] = s["p50"] - arms["direct"]["p50"]
            s["added_p99_ms"] = s["p99"] - arms["direct"]["p99"]
            s["paired_added_p50_ms"] = _paired(rounds[name], rounds["direct"])
    pairs = {}
    for label, arm, base in PAIRS:
        if "added_p50_ms" not in arms.get(arm, {}) or "added_p50_ms" not in arms.get(base, {}):
            continue
        pairs[label] = {"paired_p50_ms": _paired(rounds[arm], rounds[base]),
                        "p99_diff_ms": arms[arm]["p99"] - arms[base]["p99"],
                        "added_p50_ratio": arms[arm]["added_p50_ms"] / arms[base]["added_p50_ms"]}
    return {"rounds": raw["rounds"], "arms": arms, "pairs": pairs}


def evidence(sidecars: dict[str, Sidecar], backend: Jaeger, prom: str) -> dict[str, Any]:
    """That each arm did what it says: calls counted, spans in Jaeger, scrapes in Prometheus.
    The otlp sidecar is stopped first (SIGTERM: its batch processor flushes what is queued)."""
    status = {arm: sc.status() for arm, sc in sidecars.items()}
    sidecars["otlp"].stop()
    expected = status["otlp"]["llmCalls"] + status["otlp"]["toolCalls"] + 1  # + the attempt's
    spans, deadline = 0, time.monotonic() + 15
    while spans < expected and time.monotonic() < deadline:  # Jaeger stores what it received
        doc = get_json(f"{backend.query}/api/traces/{status['otlp']['traceID']}", timeout=60)
        spans = len(doc["data"][0]["spans"]) if doc.get("data") else 0
        time.sleep(0.5)
    query = quote('count_over_time(up{job="test"}[1h])')
    scrapes = get_json(f"{prom}/api/v1/query?query={query}")["data"]["result"]
    return {"calls": {arm: {"model": s["llmCalls"], "tool": s["toolCalls"]}
                      for arm, s in status.items()},
            "otlp_spans_in_jaeger": spans, "otlp_spans_expected": expected,
            "prometheus_scrapes": int(scrapes[0]["value"][1]) if scrapes else 0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {"machine": machine(), "tree": tree(),
                            "command": "python -m tests.bench.trace_overhead "
                                       f"--calls {args.calls} --block {args.block}"}
    deadline = time.monotonic() + args.time_limit
    body = body_of(1024)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tether-trace-")))
        up, up_port = start_helper("_upstream")
        stack.callback(_stop, up)
        backend = stack.enter_context(jaeger(work))
        sidecars = start_sidecars(work, up_port, backend)
        for sc in sidecars.values():
            stack.callback(sc.stop)
        scraped = sidecars["scraped"].ops_url.split("://", 1)[1]
        prom = stack.enter_context(prometheus(work, [scraped]))
        # Its scrape loops start after the discovery's first update (5 s): measure from then.
        wait_for(lambda: get_json(f"{prom}/api/v1/query?query=up")["data"]["result"] or None,
                 30, "Prometheus's first scrape of the scraped sidecar")
        phases = {}
        for kind, path in (("model", "/v1/chat/completions"), ("tool", "/tools/search")):
            print(f"{kind} calls: {args.calls} per target, blocks of {args.block}", flush=True)
            found = targets(up_port, sidecars, path)
            raw = sequential(found, body, args.calls, args.warmup, args.block, deadline)
            phases[kind] = figures(raw)
            phases[kind]["errors"] = {t.name: t.errors for t in found if t.errors}
        info["evidence"] = evidence(sidecars, backend, prom)
    info["machine"]["loadavg_end"] = os.getloadavg()
    return {**info, **phases}


def render(doc: dict[str, Any]) -> str:
    lines = []
    for kind in ("model", "tool"):
        ph = doc[kind]
        lines.append(f"\n{kind} calls, {ph['rounds']} rounds   ms: p50     p90     p99  "
                     "added p50  paired added p50 [IQR]")
        for name, s in ph["arms"].items():
            paired = s.get("paired_added_p50_ms") or {}
            extra = (f"  {s['added_p50_ms']:8.3f}  {paired['median']:8.3f} "
                     f"[{paired['iqr'][0]:.3f}, {paired['iqr'][1]:.3f}]") if paired else ""
            lines.append(f"  {name:8} {s['p50']:7.3f} {s['p90']:7.3f} {s['p99']:7.3f}{extra}")
        for label, p in ph["pairs"].items():
            pp = p["paired_p50_ms"]
            lines.append(f"  {label:26} paired p50 {pp['median']:+.3f} ms "
                         f"[{pp['iqr'][0]:+.3f}, {pp['iqr'][1]:+.3f}], p99 "
                         f"{p['p99_diff_ms']:+.3f} ms, added p50 x{p['added_p50_ratio']:.2f}")
    ev = doc["evidence"]
    load = doc["machine"]
    lines.append(f"\nevidence: {ev['calls']}; {ev['otlp_spans_in_jaeger']} of "
                 f"{ev['otlp_spans_expected']} spans in Jaeger; {ev['prometheus_scrapes']} "
                 f"scrapes; load {load['loadavg_start'][0]:.1f} -> {load['loadavg_end'][0]:.1f} "
                 f"on {os.cpu_count()} cores")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.trace_overhead",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000, help="calls per target and kind")
    p.add_argument("--block", type=int, default=50, help="calls per target before switching")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="10x fewer calls (a smoke run)")
    p.add_argument("--time-limit", type=float, default=900.0,
                   help="seconds for all measuring; rounds past it are skipped")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.block = args.calls // 10, args.warmup // 10, args.block // 5
    doc = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(render(doc))
    print(f"Results written to {args.out}")


if __name__ == "__main__":
    main()
