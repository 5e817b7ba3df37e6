"""The two Python helpers of the image build: images/python-deps.py (what each layer
installs) and hack/image_build.py (pip's settings lent to the build, image names)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deps = load(ROOT / "images/python-deps.py")
image_build = load(ROOT / "hack/image_build.py")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dependency_layer_is_the_package_dependencies_and_extras_come_alone() -> None:
    assert deps.requirements(PYPROJECT, []) == PYPROJECT["project"]["dependencies"]
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert deps.requirements(PYPROJECT, ["--only", "operator", "agent"]) == [
        *extras["operator"], *extras["agent"]]
    assert deps.requirements(PYPROJECT, ["--only"]) == []
    assert deps.requirements(PYPROJECT, ["build"]) == PYPROJECT["build-system"]["requires"]


def test_unknown_extra_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(SystemExit, match=r"no extra \['operater'\]; it has \['agent'"):
        deps.requirements(PYPROJECT, ["--only", "operater"])


def test_deps_script_output_is_one_requirement_a_line_and_nothing_for_no_extras() -> None:
    run = [sys.executable, str(ROOT / "images/python-deps.py"), str(ROOT / "pyproject.toml")]
    out = subprocess.run(run, check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == PYPROJECT["project"]["dependencies"]
    # Empty, not a blank line: the Dockerfile skips `pip install -r` on an empty file.
    assert subprocess.run([*run, "--only"], check=True, capture_output=True).stdout == b""


def test_pip_conf_lends_host_settings_but_no_host_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host_conf = tmp_path / "pip.conf"
    host_conf.write_text("[global]\ncert = /etc/ssl/host.pem\ntimeout = 30\n"
                         "[install]\nfind-links = /opt/wheels\n")
    monkeypatch.setattr(image_build, "PIP_FILES", [host_conf])
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.invalid/simple")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "180")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    conf = image_build.pip_conf("/run/tether-build/ca.pem")
    assert dict(conf["global"]) == {"cert": "/run/tether-build/ca.pem", "timeout": "30",
                                    "index-url": "https://mirror.invalid/simple",
                                    "default-timeout": "180"}
    assert dict(conf["install"]) == {}


def test_pip_conf_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_build, "PIP_FILES", [])
    out = tmp_path / "build-pip.conf"
    image_build.main(["pip-conf", str(out), "/run/ca.pem"])
    assert out.stat().st_mode & 0o077 == 0
    assert "cert = /run/ca.pem" in out.read_text()


def _layout(root: Path, name: str, blobs: dict[str, bytes]) -> Path:
    (root / "blobs/sha256").mkdir(parents=True)
    for digest, data in blobs.items():
        (root / "blobs/sha256" / digest).write_bytes(data)
    manifest = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{name}", "size": 1,
                "annotations": {"org.opencontainers.image.ref.name": name}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    return root


def test_merge_stores_shared_layers_once_and_names_each_image_by_version(tmp_path: Path) -> None:
    a = _layout(tmp_path / "a", "sidecar", {"base": b"debian", "app": b"sidecar app"})
    b = _layout(tmp_path / "b", "operator", {"base": b"debian", "kopf": b"kopf"})
    out = tmp_path / "out"
    image_build.merge(out, "0.1.0", [a, b])
    assert sorted(p.name for p in (out / "blobs/sha256").iterdir()) == ["app", "base", "kopf"]
    assert (out / "blobs/sha256/base").stat().st_nlink == 2  # a link to a's, no copy
    names = [m["annotations"]["io.containerd.image.name"]
             for m in json.loads((out / "index.json").read_text())["manifests"]]
    assert names == ["docker.io/tether/sidecar:0.1.0", "docker.io/tether/operator:0.1.0"]
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_an_unnamed_manifest_is_refused(tmp_path: Path) -> None:
    layout = tmp_path / "a"
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "index.json").write_text(json.dumps({"manifests": [{"digest": "sha256:ab"}]}))
    with pytest.raises(SystemExit, match=r"no ref\.name"):
        image_build.merge(tmp_path / "out", "0.1.0", [layout])
