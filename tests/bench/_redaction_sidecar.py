"""What the redactor costs a real sidecar: resident memory before and after its first record.

A sidecar process (tests/sidecar/proc.py, as the sidecar tests start it) with an evaluation
policy, the evaluator's test double receiving; the agent reports a ~10 KB answer of corpus text
(planted PII and keys) through ``PUT /result``; the record's redaction loads the engine. VmRSS
and VmHWM (peak) from ``/proc/PID/status`` at ready and once the record is delivered.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tests.sidecar._eval_rig import evaluation_env, running_evaluator
from tests.sidecar.proc import Sidecar, task_doc
from tether_agent import Harness

from .redaction_corpus import generate

__all__ = ["sidecar_memory"]


def _status_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def sidecar_memory() -> dict[str, Any]:
    answer = "\n".join(s.text for s in generate(100, seed=12))[:10_240]
    with tempfile.TemporaryDirectory() as tmp, running_evaluator() as (double, url):
        # The model is never called: a closed loopback port stands in for it.
        sc = Sidecar(Path(tmp), task_doc("http://127.0.0.1:9"), env=evaluation_env(url, []))
        sc.start()
        try:
            assert sc.proc is not None
            ready = _status_mb(sc.proc.pid)
            Harness(sc.url).finish({"summary": answer})
            double.wait(lambda d: len(d.records) == 1, timeout=120)
            after = _status_mb(sc.proc.pid)
            record = double.only_record()
        finally:
            sc.stop()
    return {"ready_rss_mb": ready["VmRSS"], "after_rss_mb": after["VmRSS"],
            "after_peak_mb": after["VmHWM"], "added_mb": after["VmRSS"] - ready["VmRSS"],
            "redaction": record["redaction"]}
