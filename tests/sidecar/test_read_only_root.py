"""The sidecar runs on a read-only root filesystem, as the operator runs it
(``readOnlyRootFilesystem: true``): writable are only its state dir (/var/lib/tether), /tmp (an
emptyDir) and the termination log. Everything else — the Python packages, HOME — is read-only,
in a private mount namespace of its own (the machine's mounts are untouched: a per-mount
``remount,bind,ro``)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether_agent import Harness

from .proc import Sidecar, task_doc

# Run inside the new mount namespace: the writable places first, then the root read-only.
_MOUNT = ('for d in "$TETHER_RW_STATE" "$TETHER_RW_TMP" "$TETHER_RW_TERM"; do '
          'mount --bind "$d" "$d" || exit 97; done; '
          'mount -o remount,bind,ro / || exit 97; exec "$@"')


class ReadOnlyRootSidecar(Sidecar):
    def command(self) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT, "sh",
                *super().command()]


def _needs_mount_namespaces() -> None:
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True, check=False)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.fail("this test runs the sidecar in a private mount namespace: it needs "
                    f"unshare (util-linux) and root (CAP_SYS_ADMIN); got: {probe.stderr}")


@pytest.fixture
def read_only(tmp_path: Path, model_server: str, tool_server: str) -> Iterator[Sidecar]:
    _needs_mount_namespaces()
    tmp, home = tmp_path / "tmp", tmp_path / "home"
    for d in (tmp, home, tmp_path / "state"):
        d.mkdir()
    (tmp_path / "termination").touch()
    task = task_doc(model_server, tools=[{"name": "ok", "url": tool_server + "/ok"}])
    env = {"TMPDIR": str(tmp), "HOME": str(home), "TETHER_RW_STATE": str(tmp_path / "state"),
           "TETHER_RW_TMP": str(tmp), "TETHER_RW_TERM": str(tmp_path / "termination")}
    sc = ReadOnlyRootSidecar(tmp_path, task, env=env)
    sc.start()
    yield sc
    sc.stop()


def test_the_namespace_is_read_only_but_for_the_three_places(read_only: Sidecar) -> None:
    """The harness itself: a write to HOME or the packages fails in it, to /tmp succeeds."""
    wrapped = ReadOnlyRootSidecar(read_only.workdir / "probe", task_doc("http://127.0.0.1:9"),
                                  env=read_only.env)
    prefix = wrapped.command()[:wrapped.command().index(sys.executable)]
    site = Path(httpx.__file__).parent / "probe"
    for target, ok in [(read_only.workdir / "home" / "probe", False), (site, False),
                       (Path(read_only.env["TMPDIR"]) / "probe", True)]:
        run = subprocess.run([*prefix, "touch", str(target)], env=read_only.env,
                             capture_output=True, text=True, check=False)
        assert (run.returncode == 0) is ok, (target, run.stderr)
        if not ok:
            assert "Read-only file system" in run.stderr
    (Path(read_only.env["TMPDIR"]) / "probe").unlink()


def _exercise(sc: Sidecar) -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "max_tokens": 50,
                            "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(sc.url + "/v1/chat/completions", json=body, timeout=30).is_success
    with httpx.stream("POST", sc.url + "/v1/chat/completions", timeout=30,
                      json={**body, "stream": True}) as r:
        assert r.status_code == 200 and b"[DONE]" in r.read()
    assert httpx.post(sc.url + "/tools/ok", json={"q": "x"}, timeout=30).is_success
    h = Harness(sc.url)
    h.checkpoint(1, {"messages": ["a"]})
    got = h.resume()
    assert got is not None and got.step == 1
    assert httpx.get(sc.ops_url + "/metrics", timeout=10).is_success


def test_the_sidecar_writes_only_its_state_dir_tmp_and_termination_log(
        read_only: Sidecar) -> None:
    sc = read_only
    _exercise(sc)
    assert sc.proc is not None
    sc.proc.send_signal(signal.SIGTERM)
    assert sc.proc.wait(20) == 0
    log = sc.log()
    assert "Read-only file system" not in log and "Traceback" not in log, log
    summary = json.loads((sc.workdir / "termination").read_text())
    assert summary["llmCalls"] == 2 and summary["toolCalls"] == 1
    assert list((sc.workdir / "home").iterdir()) == []  # HOME need not be writable
    assert list((sc.workdir / "tmp").iterdir()) == []  # nor /tmp, today
