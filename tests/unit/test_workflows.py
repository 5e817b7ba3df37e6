"""The GitHub Actions workflows (.github/workflows) pass actionlint, with shellcheck on every
`run:` script, and pin each third-party action to a commit.

actionlint and shellcheck come from hack/actionlint.sh (the make targets pass them as
$ACTIONLINT and $SHELLCHECK); without them these tests fail naming that script.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..e2e._settings import REPO_ROOT, TETHER_CACHE
from ..e2e._tools import find_tool

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT_VERSION = re.search(  # the version hack/actionlint.sh builds, and caches under
    r"^ACTIONLINT_VERSION=(\S+)", (REPO_ROOT / "hack" / "actionlint.sh").read_text(), re.M)


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT_VERSION, "hack/actionlint.sh has no ACTIONLINT_VERSION line"
    binary = find_tool("actionlint", "ACTIONLINT", "hack/actionlint.sh",
                       TETHER_CACHE / "tools" / f"actionlint-{ACTIONLINT_VERSION.group(1)}"
                       / "actionlint")
    shellcheck = find_tool("shellcheck", "SHELLCHECK", "hack/actionlint.sh --shellcheck",
                           TETHER_CACHE / "tools" / "shellcheck")
    # -pyflakes= : no Python `run:` scripts here, and a pyflakes on PATH must not change that.
    return subprocess.run([binary, "-no-color", "-shellcheck", shellcheck, "-pyflakes=",
                           *map(str, paths)], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO_ROOT)


def test_there_is_an_e2e_workflow() -> None:
    assert [p.name for p in WORKFLOWS] == ["e2e.yaml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    out = actionlint(workflow)
    assert out.returncode == 0, f"actionlint {workflow.name}:\n{out.stdout}{out.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an unknown input, a bad expression and a shell mistake."""
    broken = tmp_path / ".github" / "workflows" / "broken.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text(yaml.safe_dump({
        "on": "push",
        "jobs": {"j": {"runs-on": "ubuntu-24.04", "steps": [
            {"uses": "actions/setup-python@v5", "with": {"python-versio": "3.11"}},
            {"run": "echo ${{ github.nothing_here }}"},
            {"run": 'for f in $(ls *.txt); do cat $f; done'},
        ]}}}))
    out = actionlint(broken)
    assert out.returncode == 1, out.stdout + out.stderr
    assert 'input "python-versio" is not defined' in out.stdout, out.stdout
    assert "nothing_here" in out.stdout, out.stdout
    assert "shellcheck reported issue" in out.stdout and "SC2045" in out.stdout, out.stdout


def uses_of(doc: dict[str, Any]) -> list[str]:
    return [step["uses"] for job in doc["jobs"].values() for step in job.get("steps", [])
            if "uses" in step]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_commit_of_a_named_release(workflow: Path) -> None:
    text = workflow.read_text()
    uses = uses_of(yaml.safe_load(text))
    assert uses
    for ref in uses:
        if ref.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), \
            f"{ref}: pin to a full commit SHA (a tag can be moved)"
        line = next(ln for ln in text.splitlines() if ref in ln)
        assert re.search(r"#\s*v\d+\.\d+\.\d+\s*$", line), \
            f"{ref}: name the release the commit is, as '# vX.Y.Z'"
