"""Both reference agents, run as PID 1 of their own PID namespace as in a container, exit on
SIGTERM (143) while waiting on a model call: the kernel gives PID 1 no default action for a
signal, so without a handler an evicted agent would run on through the pod's grace period and
be SIGKILLed (issue #11). Each runs under the local harness against a model double that holds
its answer."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests._obs import wait_for
from tether_cli.run import LocalRun
from tether_examples import scripted_model
from tether_examples._serve import serve_in_thread

HELD = {"model": "gpt-4o", "after_last": "repeat_last",
        "turns": [{"content": "late", "delay": 120.0,
                   "usage": {"input_tokens": 5, "output_tokens": 1}}]}


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    with serve_in_thread(scripted_model.build_app(HELD)) as url:
        yield url


def pid_namespace_root() -> list[str]:
    """``unshare`` runs the agent as PID 1 of a new PID namespace (root needed, as here)."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True,
                           text=True, check=False) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.fail("this test needs unshare (util-linux) and root to run the agent as PID 1: "
                    f"{probe.stderr if probe else 'unshare not found'}")
    return ["unshare", "--pid", "--fork", "--kill-child"]


def ns_pids(pid: int) -> list[int]:
    """The process's PID in each namespace it is in, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(p) for p in line.split()[1:]]
    return []


def the_child(pid: int) -> int:
    """The agent: unshare's only child, PID 1 inside its namespace."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else 0


@pytest.mark.parametrize("module", ["reference_agent", "agents_agent"])
def test_the_agent_exits_on_sigterm_as_pid_1(module: str, model: str, tmp_path: Path) -> None:
    task = {
        "apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
        "metadata": {"name": "stopped", "uid": "0c7a55e2-1111-4222-8333-444455550009"},
        "spec": {
            "agent": {"image": "tether/agent:dev", "command": [
                *pid_namespace_root(), sys.executable, "-m", f"tether_examples.{module}"]},
            "task": {"instructions": "Answer."},
            "model": {"provider": "openai", "name": "gpt-4o", "baseURL": model + "/v1",
                      "allowPlaintextHTTP": True,
                      "pricing": {"inputPerMTok": "1.00", "outputPerMTok": "2.00"}},
            "costEnvelope": {"hardLimitUSD": "1.00"},
        },
    }
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    before = len(httpx.get(model + "/_scripted/requests", timeout=5).json())
    run = LocalRun(tmp_path / "task.yaml", tmp_path / "state",
                   sidecar_args=("--grace-seconds", "0.5"))  # its call in flight: no wait
    run.start()
    assert run.agent is not None
    unshare = run.agent
    try:
        wait_for(lambda: len(httpx.get(model + "/_scripted/requests", timeout=5).json())
                 > before or None, 60, "the agent's model call at the double")
        agent = wait_for(lambda: the_child(unshare.pid) or None, 10, "the agent process")
        assert ns_pids(agent) == [agent, 1]  # PID 1 in its own namespace
        os.kill(agent, signal.SIGTERM)
        # Bounded: held by the double for 120 s, an agent ignoring the signal would wait it out.
        assert unshare.wait(30) == 143
    finally:
        if unshare.poll() is None:
            unshare.kill()
        run.finish(unshare.wait())
