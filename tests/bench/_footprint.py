"""Measurements for tests/bench/sidecar_footprint.py: start to ready, resident memory, a long
conversation through the sidecar near its context budget.

Memory is read from ``/proc/PID/status`` (VmRSS: resident now; VmHWM: the peak) and whether the
tokenizer was loaded from ``/proc/PID/maps`` (its extension module is mapped once imported).
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.sidecar.proc import Sidecar

from ._corpus import text

__all__ = ["agent_run", "cpu_seconds", "estimate_vs_reported", "memory", "start_to_ready",
           "tokenizer_loaded"]


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid``, in MB (10^6 bytes)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024 / 1e6
    return out


def tokenizer_loaded(pid: int) -> bool:
    return "bpe_openai" in Path(f"/proc/{pid}/maps").read_text()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far: less moved by other load than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_to_ready(workdir: Path, task: dict[str, Any], runs: int,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """Process spawn to the first ``/readyz`` 200, polled every 2 ms; ``runs`` fresh starts."""
    times: list[float] = []
    rss: list[float] = []
    cpu: list[float] = []
    for i in range(runs):
        ops = _free_port()
        sc = Sidecar(workdir / f"start{i}", task, "--port", "0", "--ops-port", str(ops), env=env)
        with sc.stderr_path.open("ab") as stderr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(sc.command(), stdout=subprocess.DEVNULL, stderr=stderr,
                                    env=sc.env)
        try:
            while not _ready(ops):
                if proc.poll() is not None or time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"sidecar did not become ready:\n{sc.log()}")
                time.sleep(0.002)
            times.append(time.perf_counter() - t0)
            rss.append(memory(proc.pid)["VmRSS"])
            cpu.append(cpu_seconds(proc.pid))
        finally:
            proc.terminate()
            proc.wait(20)
    ms = sorted(t * 1000 for t in times)
    return {"runs": runs, "median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1],
            "all_ms": [round(t, 1) for t in ms], "rss_at_ready_mb": statistics.median(rss),
            "cpu_ms": [round(c * 1000) for c in cpu]}


def agent_run(sc: Sidecar, calls: int, seed: int = 20261130) -> dict[str, Any]:
    """An agent that resends its whole history: each call adds the model's reply and a tool
    result from the corpus, so the prompt grows past the budget and the sidecar compacts it."""
    rng = random.Random(seed)
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You research lighthouses. " + text(rng, "prose")},
        {"role": "user", "content": "TASK: count the lighthouses on every coast."}]
    t0 = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for _ in range(calls):
            r = client.post(sc.url + "/v1/chat/completions",
                            json={"model": "gpt-4o", "max_tokens": 64, "messages": msgs})
            if r.status_code != 200:
                raise RuntimeError(f"call {len(msgs) // 2} failed: {r.status_code} {r.text}")
            reply = r.json()["choices"][0]["message"]
            msgs += [reply, {"role": "tool", "tool_call_id": reply["tool_calls"][0]["id"],
                             "content": text(rng)}]
    raw = sum(len(str(m.get("content") or "")) for m in msgs)
    return {"calls": calls, "seconds": time.perf_counter() - t0, "history_chars": raw,
            "history_messages": len(msgs)}


def estimate_vs_reported(sc: Sidecar, threshold: int) -> dict[str, Any]:
    """The sidecar's estimate of each prompt it sent against the usage the upstream reported
    for it (the upstream counts with o200k_base), from the span file."""
    every: list[float] = []
    near: list[float] = []  # prompts of at least half the threshold: where decisions are made
    for span in sc.spans():
        attrs = span.get("attributes") or {}
        est = attrs.get("tether.context.tokens_estimated")
        got = attrs.get("gen_ai.usage.input_tokens")
        if est and got and attrs.get("tether.purpose") != "context_summary":
            every.append((est - got) / got)
            if got >= threshold / 2:
                near.append((est - got) / got)
    return {"all": _errors(every), "from_half_threshold": _errors(near)}


def _errors(ratios: list[float]) -> dict[str, Any]:
    if not ratios:
        return {"n": 0}
    return {"n": len(ratios), "mean": statistics.fmean(ratios), "min": min(ratios),
            "max": max(ratios), "under_share": sum(r < 0 for r in ratios) / len(ratios)}
