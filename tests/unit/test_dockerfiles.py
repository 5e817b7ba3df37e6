"""images/*/Dockerfile against the repo, without building: the cheap drift checks.

Every entry point is a console script pyproject.toml defines, every image is built by
hack/images.sh, the Python images share one recipe, versions and labels agree. The
images themselves run on the real node in tests/e2e/test_images.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
SHARED = re.compile(r"# ---- shared by every Python image.*?# ---- end of the shared part ----\n",
                    re.S)
OCI_LABELS = ["title", "description", "version", "revision", "source", "licenses"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
            for ln in lines if ln and not ln.startswith("#")]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def python_images() -> list[Path]:
    return [d for d in DOCKERFILES if SHARED.search(d.read_text())]


def test_every_image_directory_has_a_dockerfile_and_hack_builds_each() -> None:
    built = re.search(r"^IMAGES=\((.*?)\)", (ROOT / "hack/images.sh").read_text(), re.M)
    assert built, "hack/images.sh has no IMAGES=(...) line"
    assert sorted(built.group(1).split()) == sorted(d.parent.name for d in DOCKERFILES)
    assert {d.parent.name for d in python_images()} == {
        "base", "sidecar", "operator", "agent", "scripted-model", "fault-tools"}


@pytest.mark.parametrize("dockerfile", python_images(), ids=lambda d: d.parent.name)
def test_python_entrypoint_is_a_console_script_pyproject_defines(dockerfile: Path) -> None:
    entry = [json.loads(args) for op, args in final_stage(dockerfile) if op == "ENTRYPOINT"]
    if dockerfile.parent.name == "base":  # a shell for tests and helper pods, every script on PATH
        assert entry == []
        assert ("CMD", '["bash"]') in final_stage(dockerfile)
        return
    assert len(entry) == 1 and len(entry[0]) == 1, f"{dockerfile}: one exec-form ENTRYPOINT"
    path = entry[0][0]
    assert path.startswith("/opt/tether/bin/"), path
    script = path.removeprefix("/opt/tether/bin/")
    assert script in PYPROJECT["project"]["scripts"], (
        f"{dockerfile.relative_to(ROOT)} runs {script}, which [project.scripts] does not define")


@pytest.mark.parametrize("name,binary", [("pause", "/pause"),
                                         ("local-path-provisioner",
                                          "/usr/bin/local-path-provisioner")])
def test_single_binary_image_runs_the_file_it_copies(name: str, binary: str) -> None:
    stage = final_stage(IMAGES / name / "Dockerfile")
    assert ("ENTRYPOINT", json.dumps([binary])) in stage
    assert any(op == "COPY" and args.split()[-1] == binary for op, args in stage)


def test_python_images_share_one_recipe() -> None:
    parts = {d.parent.name: SHARED.search(d.read_text()).group(0)  # type: ignore[union-attr]
             for d in python_images()}
    reference = parts["sidecar"]
    for name, part in parts.items():
        assert part == reference, f"images/{name}/Dockerfile's shared part differs from sidecar's"


def test_python_images_install_the_extras_they_need() -> None:
    extras = {}
    for d in python_images():
        found = re.search(r'^ARG EXTRAS="(.*)"$', d.read_text(), re.M)
        assert found, f"{d}: no ARG EXTRAS=\"...\" before the first FROM"
        extras[d.parent.name] = found.group(1).split()
    assert extras == {"sidecar": [], "scripted-model": [], "fault-tools": [],
                      "operator": ["operator"], "agent": ["agent"],
                      "base": ["operator", "agent"]}
    assert all(e in PYPROJECT["project"]["optional-dependencies"]
               for names in extras.values() for e in names)


def test_the_wheel_is_built_from_exactly_the_packages_hatch_ships() -> None:
    copied = {src for op, args in instructions(IMAGES / "sidecar" / "Dockerfile")
              if op == "COPY" and not args.startswith("--from") for src in args.split()[:-1]}
    packages = set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert copied == packages | {"README.md", "pyproject.toml", "images/python-deps.py"}
    assert all((ROOT / p).exists() for p in copied)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda d: d.parent.name)
def test_images_run_as_non_root_except_base(dockerfile: Path) -> None:
    users = [args for op, args in final_stage(dockerfile) if op == "USER"]
    assert users, f"{dockerfile}: no USER in the final stage"
    if dockerfile.parent.name == "base":  # the provisioner's helper pods write host paths
        assert users[-1] == "0:0"
    else:
        assert users[-1] == "65532:65532"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda d: d.parent.name)
def test_oci_labels_and_version_agree_with_pyproject(dockerfile: Path) -> None:
    stage = final_stage(dockerfile)
    labels = " ".join(args for op, args in stage if op == "LABEL")
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels, f"{dockerfile}: no {label} label"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
    assert f'org.opencontainers.image.title="tether-{dockerfile.parent.name}"' in labels
    assert ("ARG", f"VERSION={VERSION}") in stage, f"{dockerfile}: ARG VERSION={VERSION}"


def test_chart_app_version_is_the_image_tag() -> None:
    chart = yaml.safe_load((ROOT / "charts/tether/Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
