"""Where the sidecar's time goes per call: a sampling profile and a deterministic one.

``python -m tests.bench.sidecar_latency --profile`` runs, against the bench upstream:

* py-spy (from the bench venv; installed there on first use) sampling the unmodified sidecar, every
  thread, idle time excluded: CPU microseconds per call, by function, with no instrumentation
  overhead. The honest figure for "what does a call cost".
* cProfile on the event-loop thread, recording only the measured window (see
  :mod:`tests.bench._profiled_sidecar`): exact call counts, but every Python call is slowed by the
  instrumentation, so read its times as proportions.

Both write to ``_out/bench/`` and print the top costs per call.
"""

from __future__ import annotations

import collections
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.sidecar.proc import Sidecar

from . import _litellm
from ._client import SyncConn
from ._http import request_bytes

__all__ = ["run_profiles"]

RATE = 1000  # samples per second


class _CProfiledSidecar(Sidecar):
    def __init__(self, *args: Any, prefix: Path, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.prefix = prefix

    def command(self) -> list[str]:
        cmd = super().command()
        assert cmd[1:3] == ["-m", "tether_sidecar"], cmd
        return [cmd[0], "-m", "tests.bench._profiled_sidecar", "--profile-out",
                str(self.prefix), "--", *cmd[3:]]


def _py_spy() -> Path | None:
    exe = _litellm.venv_dir() / "bin" / "py-spy"
    if exe.exists():
        return exe
    if not (_litellm.venv_dir() / "bin" / "python").exists():
        return None
    done = subprocess.run([str(_litellm.venv_dir() / "bin" / "python"), "-m", "pip", "install",
                           "-q", "py-spy"], capture_output=True, timeout=300)
    return exe if done.returncode == 0 and exe.exists() else None


def _calls(port: int, body: bytes, n: int) -> None:
    conn = SyncConn("127.0.0.1", port)
    req = request_bytes("127.0.0.1", port, "/v1/chat/completions", body)
    try:
        for _ in range(n):
            conn.call(req)
    finally:
        conn.close()


def _port(sc: Sidecar) -> int:
    return int(sc.url.rsplit(":", 1)[1])


def sample(sc: Sidecar, exe: Path, body: bytes, n: int, out: Path) -> dict[str, Any]:
    assert sc.proc is not None
    _calls(_port(sc), body, max(50, n // 10))  # warm-up
    spy = subprocess.Popen([str(exe), "record", "--pid", str(sc.proc.pid), "--rate", str(RATE),
                            "--format", "raw", "--function", "--nonblocking", "--output",
                            str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches before the window opens
    t0 = time.perf_counter()
    try:
        _calls(_port(sc), body, n)
    finally:
        took = time.perf_counter() - t0
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    return {"window_s": took, "calls": n, **_fold(out, n, took)}


def _fold(path: Path, calls: int, window: float) -> dict[str, Any]:
    """Collapsed stacks -> µs of CPU per call, self and inclusive, per function."""
    self_: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    per_call = 1e6 / RATE / calls

    def top(c: collections.Counter[str], k: int) -> list[tuple[str, float]]:
        return [(f, round(v * per_call, 1)) for f, v in c.most_common(k)]

    return {"cpu_us_per_call": round(total * per_call, 1),
            "cpu_share_of_window": round(total / RATE / window, 3) if window else None,
            "top_self_us": top(self_, 30), "top_inclusive_us": top(incl, 60)}


def cprofile(sc: _CProfiledSidecar, body: bytes, n: int, index: int) -> list[tuple[str, ...]]:
    assert sc.proc is not None
    _calls(_port(sc), body, max(50, n // 10))
    sc.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    _calls(_port(sc), body, n)
    sc.proc.send_signal(signal.SIGUSR2)
    path = Path(f"{sc.prefix}.{index}.pstats")
    for _ in range(100):
        if path.exists() and path.stat().st_size:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # let the dump finish
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((f"{fn} ({Path(file).name}:{line})", nc, tt, ct))
    rows.sort(key=lambda r: r[2], reverse=True)
    return [(name, str(nc), f"{1e6 * tt / n:.1f}", f"{1e6 * ct / n:.1f}")
            for name, nc, tt, ct in rows[:30]]


def run_profiles(make: Any, bodies: dict[str, bytes], quick: bool, out_dir: Path
                 ) -> dict[str, Any]:
    """``make(cls, name, **kw)`` starts a sidecar of class ``cls``."""
    n = {"1KB": 3000, "100KB": 300}
    if quick:
        n = {k: v // 10 for k, v in n.items()}
    out: dict[str, Any] = {"rate_hz": RATE}
    exe = _py_spy()
    if exe is None:
        out["py-spy"] = "not available (needs the bench venv: run the bench once)"
    else:
        sc = make(Sidecar, "spy")
        try:
            out["py-spy"] = {size: sample(sc, exe, body, n[size], out_dir / f"pyspy-{size}.txt")
                             for size, body in bodies.items()}
        finally:
            sc.stop()
    sc = make(_CProfiledSidecar, "cprof", prefix=out_dir / "cprofile")
    try:
        out["cprofile_columns"] = ["function", "ncalls", "tottime_us_per_call",
                                   "cumtime_us_per_call"]
        out["cprofile"] = {size: cprofile(sc, body, n[size], i + 1)
                           for i, (size, body) in enumerate(bodies.items())}
    finally:
        sc.stop()
    print(f"Profiles under {out_dir} ({sys.executable})", flush=True)
    return out
