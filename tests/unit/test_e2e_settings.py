"""The e2e suites' settings (tests/e2e/_settings.py): the defaults fit the local cluster, a user's
cluster is described by TETHER_E2E_* variables, and a misspelled one is refused by name."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator

import pytest

from ..e2e._settings import IMAGES, REPO_ROOT, E2ESettings, SettingsError, settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [k for k in os.environ if k.startswith("TETHER_E2E_")]:
        monkeypatch.delenv(name)
    settings.cache_clear()
    yield
    settings.cache_clear()  # no test's variables linger in the cached settings


def test_defaults_name_the_local_images_at_the_project_version() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    got = E2ESettings()
    assert got.container("agent") == {"image": f"docker.io/tether/agent:{version}",
                                      "imagePullPolicy": "IfNotPresent"}
    assert got.load_command() is None and got.storage_class is None


def test_another_cluster_is_described_by_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_E2E_IMAGE_PREFIX", "registry.example:5000/team/")
    monkeypatch.setenv("TETHER_E2E_IMAGE_TAG", "pr-7")
    monkeypatch.setenv("TETHER_E2E_IMAGE_PULL_POLICY", "Always")
    monkeypatch.setenv("TETHER_E2E_LOAD_IMAGES", "kind load docker-image --name 'my cluster'")
    got = settings()
    assert got.container("sidecar") == {"image": "registry.example:5000/team/sidecar:pr-7",
                                        "imagePullPolicy": "Always"}
    assert got.load_command() == ["kind", "load", "docker-image", "--name", "my cluster",
                                  *(f"registry.example:5000/team/{n}:pr-7" for n in IMAGES)]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TETHER_E2E_IMAGE_TAGS", "x", "TETHER_E2E_IMAGE_TAGS (did you mean TETHER_E2E_IMAGE_TAG?)"),
    ("TETHER_E2E_PULL_POLICY", "Never", "did you mean TETHER_E2E_IMAGE_PULL_POLICY?"),
    ("TETHER_E2E_IMAGE_PULL_POLICY", "Sometimes", "'Always', 'IfNotPresent' or 'Never'"),
    ("TETHER_E2E_LOAD_IMAGES", "  ", "TETHER_E2E_LOAD_IMAGES is set but empty"),
])
def test_wrong_settings_are_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str,
                                            value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        settings()
    assert message in str(refused.value)
