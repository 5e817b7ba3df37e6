"""``make demo``: the example AgentTask end to end on this machine, through the sidecar.

Starts the two test doubles on the ports examples/agenttask-local.yaml names (the scripted model
on 127.0.0.1:18080 playing examples/scripts/reference.yaml, the fault tool server on
127.0.0.1:18081), runs ``tether run`` on a fresh state dir, then ``tether trace``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]


def _serve(module: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", f"tether_examples.{module}", "--port",
                             str(port), *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on"):
        proc.kill()
        raise SystemExit(f"demo: {module} did not start on port {port} (is it taken?)")
    return proc


def main() -> int:
    state = ROOT / "_out" / "demo" / "state"
    shutil.rmtree(state, ignore_errors=True)
    servers = [_serve("scripted_model", 18080, "--script",
                      str(ROOT / "examples" / "scripts" / "reference.yaml")),
               _serve("fault_tools", 18081)]
    try:
        rc = subprocess.call([sys.executable, "-m", "tether_cli", "run",
                              str(ROOT / "examples" / "agenttask-local.yaml"),
                              "--state-dir", str(state), "--secrets-dir",
                              str(ROOT / "examples" / "secrets")])
        print("\n--- tether trace", state)
        subprocess.call([sys.executable, "-m", "tether_cli", "trace", str(state)])
        print("\n--- status.json")
        print((state / "status.json").read_text())
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
