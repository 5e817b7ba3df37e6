"""Durability benchmarks: checkpoint writes, the journal's cost per call, restart to first step.

    python -m tests.bench.durability [--quick]

1. Checkpoint write latency at 1 KB, 100 KB and 1 MB of state: the store alone (temp file,
   fsync, rename, directory fsync) and through the sidecar (``PUT /checkpoint`` over loopback,
   which also syncs the journal first).
2. Journal cost per call: ``begin`` + ``end`` records for a call with a 1 KB response (what every
   model or tool call pays), and the same with the ``fdatasync`` a side-effecting call pays.
3. Restart to first new step: a task with 10 steps done is restarted (sidecar + reference agent,
   as ``tether run`` does); the time from launch until the agent's next checkpoint lands.

Medians with p99 and spread; results also in _out/bench/durability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    q = statistics.quantiles(s, n=100) if len(s) > 2 else s * 99
    return {"n": len(s), "p50_ms": 1e3 * statistics.median(s), "p99_ms": 1e3 * q[98],
            "min_ms": 1e3 * s[0], "max_ms": 1e3 * s[-1],
            "iqr_ms": 1e3 * (q[74] - q[24])}


def bench_store(n: int, workdir: Path) -> dict[str, Any]:
    from tether_sidecar.checkpoints import CheckpointStore

    out = {}
    for label, size in (("1KB", 1024), ("100KB", 100 * 1024), ("1MB", 1024 * 1024)):
        store = CheckpointStore(workdir / f"store-{label}", keep=3, max_bytes=8 << 20)
        state = {"blob": "x" * size}
        times = []
        for step in range(n if size < 1 << 20 else max(20, n // 4)):
            t0 = time.perf_counter()
            store.write(step, state, step)
            times.append(time.perf_counter() - t0)
        out[label] = summary(times)
    return out


def bench_put(n: int, workdir: Path) -> dict[str, Any]:
    from tests.sidecar.proc import Sidecar, task_doc

    sc = Sidecar(workdir / "sc", task_doc("http://127.0.0.1:9")).start()
    out = {}
    try:
        with httpx.Client(base_url=sc.url, timeout=30) as client:
            for label, size in (("1KB", 1024), ("100KB", 100 * 1024), ("1MB", 1024 * 1024)):
                body = json.dumps({"step": 0, "state": {"blob": "x" * size}}).encode()
                times = []
                for _ in range(n if size < 1 << 20 else max(20, n // 4)):
                    t0 = time.perf_counter()
                    r = client.put("/checkpoint", content=body)
                    times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                out[label] = summary(times)
    finally:
        sc.stop()
    return out


def bench_journal(n: int, workdir: Path) -> dict[str, Any]:
    from tether_sidecar.journal import Journal, call_key

    j = Journal(workdir / "journal.jsonl")
    j.open()
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 900}]}
    response = b'{"choices": [{"message": {"content": "' + b"y" * 900 + b'"}}]}'
    plain, synced = [], []
    for i in range(n):
        for side_effects, bucket in ((False, plain), (True, synced)):
            t0 = time.perf_counter()
            key = call_key("llm", "/chat/completions", request)
            j.begin(f"{i}{side_effects}", "llm", key, 1, hold=Decimal("0.01"),
                    side_effects=side_effects)
            j.end(f"{i}{side_effects}", key, status=200, headers={}, body=response,
                  usd=Decimal("0.005"), input_tokens=300, output_tokens=20)
            bucket.append(time.perf_counter() - t0)
    j.close()
    return {"per_call": summary(plain), "per_call_with_fdatasync": summary(synced)}


def _task_file(workdir: Path, model_url: str, tools_url: str) -> Path:
    doc = {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
           "metadata": {"name": "restart-bench"},
           "spec": {"agent": {"image": "x", "command": ["python", "-m",
                                                         "tether_examples.reference_agent"]},
                    "task": {"instructions": "go"},
                    "model": {"provider": "openai", "name": "gpt-4o",
                              "baseURL": model_url + "/v1", "allowPlaintextHTTP": True},
                    "tools": [{"name": "search", "url": tools_url + "/ok"}],
                    "costEnvelope": {"hardLimitUSD": "100.00"}}}
    path = workdir / "task.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def bench_restart(runs: int, workdir: Path) -> dict[str, Any]:
    from tether_cli.run import LocalRun
    from tether_examples import fault_tools, scripted_model
    from tether_examples._serve import serve_in_thread

    script = {"model": "gpt-4o", "turns": [
        {"content": f"step {i}", "tool_calls": [{"id": f"c{i}", "name": "search",
                                                 "arguments": {"i": i}}]} for i in range(200)]}
    first_step, sidecar_ready = [], []
    with serve_in_thread(scripted_model.build_app(script)) as model, \
            serve_in_thread(fault_tools.build_app()) as tools:
        task = _task_file(workdir, model, tools)
        for r in range(runs):
            state = workdir / f"state{r}"
            env_steps = os.environ.get("AGENT_MAX_STEPS")
            os.environ["AGENT_MAX_STEPS"] = "10"  # the first run stops after 10 steps
            try:
                run = LocalRun(task, state)
                run.start()
                assert run.agent is not None
                run.agent.wait(120)
                run.finish(run.agent.returncode)
            finally:
                if env_steps is None:
                    os.environ.pop("AGENT_MAX_STEPS")
                else:
                    os.environ["AGENT_MAX_STEPS"] = env_steps
            ckpts = state / "checkpoints"
            before = {p.name for p in ckpts.iterdir()}
            t0 = time.perf_counter()
            run = LocalRun(task, state)
            run.start()
            sidecar_ready.append(time.perf_counter() - t0)
            deadline = time.monotonic() + 60
            while not ({p.name for p in ckpts.iterdir()} - before) and time.monotonic() < deadline:
                time.sleep(0.002)
            first_step.append(time.perf_counter() - t0)
            assert run.agent is not None
            run.agent.kill()
            run.agent.wait(10)
            run.finish(run.agent.returncode)
    return {"restart_to_first_new_step": summary(first_step),
            "of_which_sidecar_start": summary(sidecar_ready)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 40 if args.quick else 400
    with tempfile.TemporaryDirectory(dir=ROOT / "_out" if (ROOT / "_out").exists() else None
                                     ) as tmp:
        work = Path(tmp)
        results = {
            "machine": {"nproc": os.cpu_count(), "python": sys.version.split()[0],
                        "loadavg": os.getloadavg()},
            "checkpoint_store": bench_store(n, work),
            "checkpoint_put_via_sidecar": bench_put(n // 2, work),
            "journal": bench_journal(n * 5, work),
            "restart": bench_restart(3 if args.quick else 10, work),
        }
    out = ROOT / "_out" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "durability.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
