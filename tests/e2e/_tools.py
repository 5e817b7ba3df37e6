"""Finding the command-line tools the tests run (helm, promtool, actionlint, shellcheck).

The make targets install each one (hack/<tool>.sh, cached under ~/.cache/tether/tools) and pass
its path in an environment variable, as the tests' only input about it besides PATH and that
cache. A tool that is not found fails the test naming the script that installs it: a fresh
machine runs these tests instead of skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ._settings import REPO_ROOT, TETHER_CACHE

__all__ = ["find_tool", "helm", "helm_version"]


def helm_version() -> str:
    """HELM_VERSION of hack/versions.env: the helm hack/helm.sh builds."""
    found = re.search(r"^HELM_VERSION=(\S+)", (REPO_ROOT / "hack" / "versions.env").read_text(),
                      re.M)
    if not found:
        pytest.fail("hack/versions.env has no HELM_VERSION line", pytrace=False)
    return found.group(1)


def find_tool(name: str, env: str, script: str, *cached: Path) -> str:
    """$env, else the first of ``cached`` that is executable (the pinned version), else
    ``name`` on PATH."""
    given = os.environ.get(env)
    if given:
        if not (Path(given).is_file() and os.access(given, os.X_OK)):
            pytest.fail(f"${env} is {given}, which is not an executable file "
                        f"(unset it, or run {script} for a good path)", pytrace=False)
        return given
    for path in cached:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is needed and was not found (${env}, PATH, "
                f"{', '.join(map(str, cached)) or 'no cache'}): run {script}, or a make target "
                f"that does (make unit, make test-local, make test)", pytrace=False)


def helm() -> str:
    """The helm of hack/helm.sh (its pinned version)."""
    return find_tool("helm", "HELM", "hack/helm.sh",
                     TETHER_CACHE / "tools" / f"helm-{helm_version()}" / "helm")
