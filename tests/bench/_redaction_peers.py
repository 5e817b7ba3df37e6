"""The engines the redactor is compared with, each in a process of its own.

datafog goes into its own venv (default ``~/.cache/tether/bench-venv-datafog``, or
``$TETHER_REDACTION_PEER_VENV``), never the project's; telemetry is off by default in datafog and
``DATAFOG_NO_TELEMETRY=1`` makes sure. Every engine runs in a fresh interpreter that reads the
corpus from a file and prints spans and timings as JSON, so import time and resident memory are
each engine's own. ``presidio`` is Presidio's recognizers alone (ours left out), from this venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["PEER_VENV", "ensure_datafog", "run_engine"]

PEER_VENV = Path(os.environ.get("TETHER_REDACTION_PEER_VENV",
                                str(Path.home() / ".cache" / "tether" / "bench-venv-datafog")))
ROOT = Path(__file__).resolve().parents[2]

# Run inside the engine's interpreter: argv = engine, corpus file. Prints one JSON object.
_RUNNER = r"""
import json, sys, time
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
engine, corpus = sys.argv[1], json.load(open(sys.argv[2]))
if engine == "tether":
    import tether_sidecar.app  # the sidecar as it is before a record is redacted
base, t0 = rss(), time.perf_counter()
if engine == "datafog":
    from datafog.engine import scan
    def detect(t): return [(e.type, e.start, e.end) for e in scan(t, engine="regex").entities]
    detect("warm up a@example.com")
else:
    from tether_sidecar.redact import Redactor
    r = Redactor(); r.load()
    if engine == "presidio":
        recs = [x for x in r._recognizers if type(x).__name__ != "SecretRecognizer"]
        def detect(t): return [(x.entity_type, x.start, x.end) for rec in recs
                               for x in rec.analyze(t, rec.supported_entities, None)]
    else:
        detect = r.find
    detect("warm up a@example.com")
load_s, loaded = time.perf_counter() - t0, rss()
spans = [detect(t) for t in corpus["texts"]]
timings, cpu = {}, {}
for size, records in corpus["records"].items():
    runs, cpus = [], []
    for rec in records:
        t, c = time.perf_counter(), time.process_time()
        detect(rec)
        runs.append(time.perf_counter() - t); cpus.append(time.process_time() - c)
    timings[size], cpu[size] = runs, cpus
print(json.dumps({"spans": spans, "timings": timings, "cpu": cpu, "load_s": load_s,
                  "rss_base_mb": base, "rss_loaded_mb": loaded, "rss_after_mb": rss()}))
"""


def ensure_datafog(install: bool, timeout: float = 900.0) -> tuple[Path | None, str]:
    """The peer venv's python, or None and why not."""
    py, stamp = PEER_VENV / "bin" / "python", PEER_VENV / ".datafog-installed"
    if py.exists() and stamp.exists():
        return py, "ok"
    if not install:
        return None, f"datafog not installed in {PEER_VENV} (run without --no-install)"
    print(f"Installing datafog into {PEER_VENV} (once)", flush=True)
    deadline = time.monotonic() + timeout
    for cmd in ([sys.executable, "-m", "venv", str(PEER_VENV)],
                [str(py), "-m", "pip", "install", "-q", "datafog"]):
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=max(1.0, deadline - time.monotonic()))
        if done.returncode != 0:
            return None, f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}"
    stamp.touch()
    return py, "ok"


def run_engine(engine: str, python: Path, corpus_file: Path) -> dict[str, Any]:
    env = {**os.environ, "DATAFOG_NO_TELEMETRY": "1",
           "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("sidecar", "api"))}
    done = subprocess.run([str(python), "-c", _RUNNER, engine, str(corpus_file)],
                          capture_output=True, text=True, timeout=1800, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"engine {engine} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["spans"] = [[tuple(s) for s in spans] for spans in result["spans"]]
    return result
