"""Helpers of the chart tests (test_chart_*.py): helm run on charts/tether, rendered objects.

helm is the one hack/helm.sh installs, passed as $HELM by the make targets; without it the
tests fail naming that script (tests/e2e/_tools.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..e2e import _tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tether"
Doc = dict[str, Any]
Render = Callable[..., list[Doc]]

FULL: Doc = {"watchNamespaces": ["a", "b"],
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                    "podMonitor": {"enabled": True}},
        "dashboards": {"enabled": True},
        "networkPolicy": {"enabled": True, "model": {"cidrs": ["203.0.113.0/24"]},
                          "prometheusNamespaces": ["monitoring"]},
        "sidecarProxy": {"httpsProxy": "http://proxy.example:3128", "noProxy": ".svc"}}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([_tools.helm(), *args], capture_output=True, text=True, timeout=60,
                         check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{out.stderr}")
    return out


@pytest.fixture
def render(tmp_path: Path) -> Render:
    """``render(values)``: the chart's objects as helm template renders them in tether-system."""
    def run(values: Doc | None = None, *, release: str = "tether") -> list[Doc]:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values or {}))
        out = helm("template", release, str(CHART), "-n", "tether-system", "-f", str(path))
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    return run


def failure(values: Doc, tmp_path: Path) -> str:
    """helm template's error for values that must be refused."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm("template", "tether", str(CHART), "-f", str(path), check=False)
    assert out.returncode != 0, f"values {values} were accepted"
    return out.stderr


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[d['kind'] for d in docs]}"
    return found[0]


def operator_container(docs: list[Doc]) -> Doc:
    pod = one(docs, "Deployment", "tether-operator")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "operator"
    return dict(container)


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}
