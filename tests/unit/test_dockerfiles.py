"""images/ against the repo, without building: the cheap drift checks.

The seven Python images are targets (stages) of images/python/Dockerfile; pause and the
provisioner have a Dockerfile each. Every entry point is a console script pyproject.toml
defines, every image is built by hack/images.sh, versions and labels agree. The images
themselves run on the real node in tests/e2e/test_images.py.
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
PYTHON = IMAGES / "python" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PYTHON_IMAGES = {"sidecar": "deps", "operator": "deps-operator", "agent": "deps-agent",
                 "scripted-model": "deps", "fault-tools": "deps", "evaluator": "deps-evaluator",
                 "base": "deps-all"}
SINGLE = {"pause": "/pause", "local-path-provisioner": "/usr/bin/local-path-provisioner"}
OCI_LABELS = ["title", "description", "version", "revision", "source", "licenses"]
Steps = list[tuple[str, str]]


def instructions(dockerfile: Path) -> Steps:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
            for ln in lines if ln and not ln.startswith("#")]


def stages(dockerfile: Path) -> dict[str, Steps]:
    """Each stage's steps by its name (the last, unnamed stage is ''), FROM first."""
    out: dict[str, Steps] = {}
    name = None
    for op, args in instructions(dockerfile):
        if op == "FROM":
            name = args.split(" AS ")[1].strip() if " AS " in args else ""
            out[name] = []
        assert name is not None, f"{dockerfile}: {op} before the first FROM"
        out[name].append((op, args))
    return out


def image_steps(name: str) -> Steps:
    """What image ``name`` is: its stage with what it inherits (LABELs, ENV) from its parents."""
    if name in SINGLE:
        return stages(IMAGES / name / "Dockerfile")[""]
    all_stages = stages(PYTHON)
    steps, stage = [], name
    while stage in all_stages:
        steps = all_stages[stage] + steps
        stage = all_stages[stage][0][1].split(" AS ")[0].strip()
    return steps


def test_hack_builds_every_image_and_nothing_else() -> None:
    built = re.search(r"^IMAGES=\((.*?)\)", (ROOT / "hack/images.sh").read_text(), re.M)
    assert built, "hack/images.sh has no IMAGES=(...) line"
    assert sorted(built.group(1).split()) == sorted([*PYTHON_IMAGES, *SINGLE])
    dirs = sorted(d.parent.name for d in IMAGES.glob("*/Dockerfile"))
    assert dirs == sorted(["python", *SINGLE]), "one Dockerfile for the Python images"
    final = [n for n, steps in stages(PYTHON).items() if steps[0][1].startswith("runtime ")]
    assert sorted(final) == sorted(PYTHON_IMAGES)


@pytest.mark.parametrize("name", sorted(PYTHON_IMAGES))
def test_python_entrypoint_is_a_console_script_pyproject_defines(name: str) -> None:
    steps = image_steps(name)
    entry = [json.loads(args) for op, args in steps if op == "ENTRYPOINT"]
    if name == "base":  # a shell for tests and helper pods, every script on PATH
        assert entry == [] and ("CMD", '["bash"]') in steps
        return
    assert len(entry) == 1 and len(entry[0]) == 1, f"target {name}: one exec-form ENTRYPOINT"
    script = entry[0][0].removeprefix("/opt/tether/bin/")
    assert script in PYPROJECT["project"]["scripts"], (
        f"target {name} runs {script}, which [project.scripts] does not define")


@pytest.mark.parametrize(("name", "deps"), sorted(PYTHON_IMAGES.items()))
def test_python_images_take_the_dependencies_they_need_and_the_same_app_layer(
        name: str, deps: str) -> None:
    copies = [args for op, args in stages(PYTHON)[name] if op == "COPY"]
    assert copies == [f"--from={deps} /opt/tether /opt/tether", "--from=app /opt/app/ /opt/tether/"]


def test_extras_stages_install_the_pyproject_extras() -> None:
    extras = {n: re.findall(r"--only (\w+)", " ".join(a for op, a in s if op == "RUN"))
              for n, s in stages(PYTHON).items() if n.startswith("deps-")}
    assert extras == {"deps-operator": ["operator"], "deps-agent": ["agent"],
                      "deps-evaluator": ["evaluator"],  # onto deps-operator: its Kube client
                      "deps-all": ["agent"]}  # deps-all stacks agent onto deps-operator
    assert stages(PYTHON)["deps-all"][0][1] == "deps-operator AS deps-all"
    assert stages(PYTHON)["deps-evaluator"][0][1] == "deps-operator AS deps-evaluator"
    assert {"operator", "agent", "evaluator"} <= set(PYPROJECT["project"]["optional-dependencies"])


@pytest.mark.parametrize(("name", "binary"), sorted(SINGLE.items()))
def test_single_binary_image_runs_the_file_it_copies(name: str, binary: str) -> None:
    stage = image_steps(name)
    assert ("ENTRYPOINT", json.dumps([binary])) in stage
    assert any(op == "COPY" and args.split()[-1] == binary for op, args in stage)


def test_the_wheel_is_built_from_exactly_the_packages_hatch_ships() -> None:
    copied = {src for op, args in instructions(PYTHON)
              if op == "COPY" and not args.startswith("--from") for src in args.split()[:-1]}
    packages = set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert copied == packages | {"README.md", "pyproject.toml", "images/python-deps.py"}
    assert all((ROOT / p).exists() for p in copied)


@pytest.mark.parametrize("name", sorted([*PYTHON_IMAGES, *SINGLE]))
def test_images_run_as_non_root_except_base(name: str) -> None:
    users = [args for op, args in image_steps(name) if op == "USER"]
    assert users, f"{name}: no USER"
    assert users[-1] == ("0:0" if name == "base" else "65532:65532")


@pytest.mark.parametrize("name", sorted([*PYTHON_IMAGES, *SINGLE]))
def test_oci_labels_and_version_agree_with_pyproject(name: str) -> None:
    steps = image_steps(name)
    labels = " ".join(args for op, args in steps if op == "LABEL")
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in labels, f"{name}: no {label} label"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
    assert f'org.opencontainers.image.title="tether-{name}"' in labels
    assert ("ARG", f"VERSION={VERSION}") in steps, f"{name}: ARG VERSION={VERSION}"


def test_chart_app_version_is_the_image_tag() -> None:
    chart = yaml.safe_load((ROOT / "charts/tether/Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
