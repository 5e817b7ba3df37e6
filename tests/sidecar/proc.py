"""Run the real ``tether-sidecar`` as a child process, as a pod would, and read what it exposes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

REAL_KEY = "sk-real-key-held-by-the-sidecar"


def task_doc(model_url: str, provider: str = "openai", name: str = "gpt-4o",
             **spec: Any) -> dict[str, Any]:
    base = model_url + "/v1" if provider == "openai" else model_url
    doc: dict[str, Any] = {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": "t1", "namespace": "team-a",
                     "uid": "6f1c2a3e-0000-4000-8000-00000000abcd"},
        "spec": {
            "agent": {"image": "example/agent:1"},
            "task": {"instructions": "Answer the question."},
            "model": {"provider": provider, "name": name, "baseURL": base,
                      "allowPlaintextHTTP": True,  # the test doubles serve http on 127.0.0.1
                      "credentialsSecretRef": {"name": "model-creds", "key": "api-key"}},
            "costEnvelope": {"softLimitUSD": "1.00", "hardLimitUSD": "2.00"},
            "retryPolicy": {"calls": {"initialInterval": "10ms", "maximumInterval": "50ms",
                                      "maxAttempts": 3}},
        },
    }
    for key, value in spec.items():
        doc["spec"][key] = value
    return doc


class Sidecar:
    def __init__(self, workdir: Path, task: dict[str, Any], *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = workdir / "state"
        self.task_path = workdir / "agenttask.yaml"
        self.task_path.write_text(yaml.safe_dump(task))
        secret = workdir / "secrets" / "model-creds"
        secret.mkdir(parents=True, exist_ok=True)
        (secret / "api-key").write_text(REAL_KEY + "\n")
        self.args = args
        self.env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "50", **(env or {})}
        self.stderr_path = workdir / "sidecar.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = self.ops_url = ""
        self.closers: list[Callable[[], None]] = []  # clients a test opened against us

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tether_sidecar", "--task", str(self.task_path),
                "--state-dir", str(self.state_dir), "--secrets-dir",
                str(self.workdir / "secrets"), "--port", "0", "--ops-port", "0",
                "--ops-host", "127.0.0.1", "--termination-log", str(self.workdir / "termination"),
                *self.args]

    def start(self, timeout: float = 20.0) -> Sidecar:
        with self.stderr_path.open("ab") as stderr:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=stderr,
                                         env=self.env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline().decode()
                if line.startswith("tether-sidecar ready"):
                    fields = dict(part.split("=", 1) for part in line.split()[2:])
                    self.url, self.ops_url = fields["agent"], fields["ops"]
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited {self.proc.returncode}:\n{self.log()}")
        self.proc.kill()
        raise RuntimeError(f"sidecar not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a node losing the pod does: nothing flushed, nothing said; then close."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.stop()  # closes pipes and clients

    def stop(self, timeout: float = 20.0) -> int:
        for close in self.closers:
            close()
        self.closers.clear()
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(self.url + "/status", timeout=5).json()
        return doc

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        text = httpx.get(self.ops_url + "/metrics", timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    total += sample.value
        return total

    def spans(self) -> list[dict[str, Any]]:
        path = self.state_dir / "spans.jsonl"
        if not path.exists():
            return []
        import json
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_span(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
                  ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for span in self.spans():
                if pred(span):
                    return span
            time.sleep(0.05)
        raise AssertionError(f"no matching span within {timeout}s; have "
                             f"{[s['name'] for s in self.spans()]}")
