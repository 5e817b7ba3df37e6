"""The LiteLLM proxy as the peer to compare with: its own venv, its own process, loopback only.

LiteLLM is installed from PyPI into a separate venv (default ``~/.cache/tether/bench-venv``, or
``$TETHER_BENCH_VENV``), never into the project's: its dependency tree is large and pins things
the sidecar must not inherit. It runs with the smallest configuration that routes ``gpt-4o`` to
the bench upstream: no database, no UI, no callbacks, telemetry off, the price map read from the
package rather than fetched. Outbound proxies point at a closed loopback port so that any attempt
to leave the machine fails instead of happening; loopback is exempt (``NO_PROXY``).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ._http import AGENT_KEY

__all__ = ["LiteLLM", "ensure_venv", "free_port"]

DEFAULT_VENV = Path.home() / ".cache" / "tether" / "bench-venv"
_STAMP = ".litellm-installed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def venv_dir() -> Path:
    return Path(os.environ.get("TETHER_BENCH_VENV", str(DEFAULT_VENV)))


def ensure_venv(install: bool, timeout: float = 1200.0) -> tuple[Path | None, str]:
    """The venv's ``litellm`` executable, or None and why not. Installs when ``install``."""
    venv = venv_dir()
    exe = venv / "bin" / "litellm"
    if exe.exists() and (venv / _STAMP).exists():
        return exe, "ok"
    if not install:
        return None, f"LiteLLM not installed in {venv} (run without --no-install to install it)"
    print(f"Installing litellm[proxy] into {venv} (once; a few minutes)", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"]]
    deadline = time.monotonic() + timeout
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None, f"installing LiteLLM timed out after {timeout:.0f}s: {' '.join(cmd)}"
        if done.returncode != 0:
            return None, f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}"
    (venv / _STAMP).touch()
    return exe, "ok"


def version(exe: Path) -> str:
    py = exe.parent / "python"
    done = subprocess.run([str(py), "-c", "import importlib.metadata as m; "
                           "print(m.version('litellm'))"], capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip() or "unknown"


_CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {api_base}
      api_key: sk-bench-upstream
litellm_settings:
  telemetry: false
  drop_params: true
  set_verbose: false
"""


class LiteLLM:
    def __init__(self, exe: Path, upstream_base: str, workdir: Path) -> None:
        self.exe = exe
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "litellm.yaml"
        self.config.write_text(_CONFIG.format(api_base=upstream_base))
        self.log_path = workdir / "litellm.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LITELLM_", "DATABASE_", "OPENAI_"))}
        env.update({
            "LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "NO_DOCS": "True",
            "NO_REDOC": "True", "DISABLE_ADMIN_UI": "True", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "LITELLM_MASTER_KEY": AGENT_KEY,
            "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        return env

    def start(self, timeout: float = 120.0) -> LiteLLM:
        self.port = free_port()
        cmd = [str(self.exe), "--config", str(self.config), "--host", "127.0.0.1",
               "--port", str(self.port), "--num_workers", "1"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env(), cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"LiteLLM exited {self.proc.returncode}:\n{self.log_tail()}")
            if self._alive():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"LiteLLM not ready in {timeout:.0f}s:\n{self.log_tail()}")

    def _alive(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/health/liveliness")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
