"""Added latency of the sidecar per model call, against direct calls and the LiteLLM proxy.

    python -m tests.bench.sidecar_latency [--quick] [--no-litellm] [--no-install]

Starts a fast OpenAI-compatible upstream (its own process), a bare pass-through proxy on the
sidecar's own stack (aiohttp server + the sidecar's transport, no harness work), the sidecar (with
accounting, spans and metrics on, as in production) and the LiteLLM proxy (from PyPI, in its own
venv), all on 127.0.0.1. Then, from this one client process, with the same client for every
target: sequential latency (p50/p90/p99/mean/stdev) and throughput at 32 in flight, for ~1 KB and
~100 KB request bodies, targets interleaved in rounds. Reports each target's added latency over
direct calls, tether's own work (sidecar - bare proxy) and LiteLLM's added latency over ours.
Prints a table, writes ``_out/bench/sidecar_latency.json``. Method and figures:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.sidecar.proc import Sidecar, task_doc

from . import _litellm, _profile, _report
from ._measure import Target, concurrent, sequential

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_out" / "bench" / "sidecar_latency.json"
SIZES = {"1KB": 1024, "100KB": 100 * 1024}
_TEXT = ("the agent reads a file then calls a tool and checks the result before it writes the "
         "next step of its plan while the budget holds and the context stays within its window "
         "so every call is priced reserved settled traced and counted")
_WORDS = _TEXT.split(" ")


def body_of(size: int) -> bytes:
    """A chat request whose JSON is exactly ``size`` bytes: prose-like text, so a tokenizer does
    realistic work on it (a run of one letter would be a pathological case for BPE)."""
    doc: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 64, "temperature": 0,
                           "messages": [{"role": "system", "content": "You are terse."},
                                        {"role": "user", "content": ""}]}
    need = size - len(json.dumps(doc, separators=(",", ":")))
    words, n, i = [], 0, 0
    while n < need:
        w = _WORDS[(i * 7 + i // 5) % len(_WORDS)]
        words.append(w)
        n += len(w) + 1
        i += 1
    doc["messages"][1]["content"] = " ".join(words)[:need]
    out = json.dumps(doc, separators=(",", ":")).encode()
    assert len(out) == size, (len(out), size)
    return out


def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_start": os.getloadavg()}


def tree() -> dict[str, Any]:
    """Which sidecar code was measured: others may be editing it while the bench runs."""
    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, timeout=30)
        return done.stdout.strip()
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_sidecar_files": git("status", "--porcelain", "sidecar").splitlines()}


def start_helper(module: str, *args: str, timeout: float = 20.0
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``tests.bench.<module>``, which prints ``… ready port=P`` once bound."""
    proc = subprocess.Popen([sys.executable, "-m", f"tests.bench.{module}", "--port", "0", *args],
                            stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode() if ready else ""
    if " ready port=" not in line:
        _stop(proc)
        raise RuntimeError(f"{module} did not start: {line!r}")
    return proc, int(line.split("port=")[1])


def start_sidecar(work: Path, up_port: int, cls: type[Sidecar] = Sidecar,
                  name: str = "sidecar", **kw: Any) -> Sidecar:
    doc = task_doc(f"http://127.0.0.1:{up_port}",
                   costEnvelope={"softLimitUSD": "50000.00", "hardLimitUSD": "100000.00"})
    # The production span export interval (the test helper shortens it to 50 ms).
    sc = cls(work / name, doc, env={"OTEL_BSP_SCHEDULE_DELAY": "5000"}, **kw)
    return sc.start(timeout=60)


def sidecar_facts(sc: Sidecar) -> dict[str, Any]:
    """What the sidecar accounted for the run: proof that accounting, spans and metrics were on."""
    status = sc.status()
    span_file = sc.state_dir / "spans.jsonl"
    spans = sum(1 for _ in span_file.open("rb")) if span_file.exists() else 0
    total = sc.metric("tether_call_overhead_seconds_sum", kind="model")
    count = sc.metric("tether_call_overhead_seconds_count", kind="model")
    return {"llmCalls": status["llmCalls"], "spentUSD": status["spentUSD"],
            "spans_written": spans, "self_reported_overhead_mean_ms":
                1e3 * total / count if count else None}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.sidecar_latency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="~10x fewer calls (a smoke run)")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    p.add_argument("--no-install", action="store_true",
                   help="use LiteLLM only if its venv exists; never pip install")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--profile", action="store_true",
                   help="instead of measuring, profile the sidecar per call")
    p.add_argument("--time-limit", type=float, default=900.0,
                   help="seconds for all measuring; phases past it stop early and say so")
    return p.parse_args(argv)


def plan(quick: bool) -> dict[str, dict[str, int]]:
    div = 10 if quick else 1
    return {"1KB": {"n": 2000 // div, "warmup": 200 // div, "block": 50 // div,
                    "conc_total": 6400 // div},
            "100KB": {"n": 500 // div, "warmup": 50 // div, "block": 25 // div,
                      "conc_total": 1600 // div}}


def measure(targets: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.time_limit
    results: dict[str, Any] = {"sequential": {}, "concurrent": {}}
    for size, p in plan(args.quick).items():
        print(f"Sequential {size}: {p['n']} calls per target", flush=True)
        results["sequential"][size] = sequential(targets, body_of(SIZES[size]), p["n"],
                                                 p["warmup"], p["block"], deadline)
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    for size, p in plan(args.quick).items():
        print(f"Concurrent {size}: {p['conc_total']} calls per target, "
              f"{args.concurrency} in flight", flush=True)
        results["concurrent"][size] = run(concurrent(
            targets, body_of(SIZES[size]), p["conc_total"], args.concurrency, 4, deadline))
    return results


def profile(args: argparse.Namespace) -> None:
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tether-prof-")))
        up, up_port = start_helper("_upstream")
        stack.callback(_stop, up)

        def make(cls: type[Sidecar], name: str, **kw: Any) -> Sidecar:
            return start_sidecar(work, up_port, cls, name, **kw)

        doc = _profile.run_profiles(make, {k: body_of(v) for k, v in SIZES.items()},
                                    args.quick, out_dir)
    doc["machine"] = machine()
    (out_dir / "sidecar_profile.json").write_text(json.dumps(doc, indent=2))
    print(_report.render_profile(doc))


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    if args.profile:
        profile(args)
        return
    command = "python -m tests.bench.sidecar_latency" + (" --quick" if args.quick else "")
    info: dict[str, Any] = {"machine": machine(), "tree": tree(), "command": command,
                            "plan": plan(args.quick), "concurrency": args.concurrency}
    print(f"Machine: {info['machine']}", flush=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tether-bench-")))
        up, up_port = start_helper("_upstream")
        stack.callback(_stop, up)
        targets = [Target("direct", up_port)]
        floor, floor_port = start_helper("_floor_proxy", "--upstream",
                                         f"http://127.0.0.1:{up_port}/v1")
        stack.callback(_stop, floor)
        targets.append(Target("bare-proxy", floor_port))
        sc = start_sidecar(work, up_port)
        stack.callback(sc.stop)
        sidecars = {"sidecar": sc}
        targets.append(Target("sidecar", int(sc.url.rsplit(":", 1)[1])))
        info["litellm"] = _start_litellm(args, up_port, work, stack, targets)
        results = measure(targets, args)
        info["sidecar_facts"] = {name: sidecar_facts(sc) for name, sc in sidecars.items()}
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["errors"] = {t.name: t.errors for t in targets if t.errors}
    doc = _report.build(info, results, [t.name for t in targets])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(_report.render(doc))
    print(f"Results written to {args.out}")


def _start_litellm(args: argparse.Namespace, up_port: int, work: Path,
                   stack: contextlib.ExitStack, targets: list[Target]) -> dict[str, Any]:
    if args.no_litellm:
        return {"status": "skipped (--no-litellm)"}
    exe, why = _litellm.ensure_venv(install=not args.no_install)
    if exe is None:
        print(f"LiteLLM NOT MEASURED: {why}", flush=True)
        return {"status": f"not measured: {why}"}
    proxy = _litellm.LiteLLM(exe, f"http://127.0.0.1:{up_port}/v1", work / "litellm")
    stack.callback(proxy.stop)
    print("Starting LiteLLM proxy (up to 120 s)", flush=True)
    t0 = time.monotonic()
    try:
        proxy.start(timeout=120)
    except RuntimeError as exc:
        print(f"LiteLLM NOT MEASURED: it failed to start: {exc}", flush=True)
        return {"status": f"failed to start: {str(exc)[:2000]}"}
    targets.append(Target("litellm", proxy.port))
    return {"status": "ok", "version": _litellm.version(exe),
            "startup_s": round(time.monotonic() - t0, 1)}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


if __name__ == "__main__":
    main()
