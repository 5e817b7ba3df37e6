"""The two CLIs, run as real processes: they announce their port, serve, and stop on SIGTERM."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

import tether_examples

EXAMPLES_DIR = Path(tether_examples.__file__).parents[1]
REFERENCE = EXAMPLES_DIR / "scripts" / "reference.yaml"


def _env() -> dict[str, str]:
    # The child must import tether_examples however this test process found it.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES_DIR), *sys.path])}


@contextmanager
def cli(*args: str, timeout: float = 20.0) -> Iterator[str]:
    """Run `python -m <args>`, yield the URL from its first stdout line, then SIGTERM it."""
    command = [sys.executable, "-m", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=_env(), text=True) as proc:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
        line = proc.stdout.readline() if ready else ""
        try:
            assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
            yield line.removeprefix("listening on ").strip()
        finally:
            proc.terminate()
            assert proc.wait(timeout) == 0, "the server did not exit cleanly on SIGTERM"
        assert proc.stdout.read() == "", "the only output is the listening line"


def test_scripted_model_cli_serves_the_script() -> None:
    with cli("tether_examples.scripted_model", "--script", str(REFERENCE), "--port", "0") as url:
        body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{url}/v1/messages", json=body)

    assert answer.json()["content"][1]["name"] == "search"


def test_fault_tools_cli_serves_the_routes() -> None:
    with cli("tether_examples.fault_tools", "--host", "127.0.0.1", "--port", "0") as url:
        status = httpx.get(f"{url}/status/418").status_code

    assert status == 418


def test_scripted_model_cli_rejects_a_bad_script(tmp_path: Path) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("turns: [{contnet: hi}]\n")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tether_examples.scripted_model",
            "--script",
            str(script),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        env=_env(),
    )

    assert result.returncode == 2
    assert "turns[0] has unknown key(s) contnet" in result.stderr
    assert result.stdout == ""
