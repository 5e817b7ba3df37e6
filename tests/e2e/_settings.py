"""What the e2e and integration suites take from the environment: TETHER_E2E_* variables, read
here and nowhere else. A misspelled TETHER_E2E_* variable is refused, naming the one meant.

The defaults fit the local cluster of ``make cluster-up`` (images imported into its containerd,
nothing to load); docs/cluster.md says what to set for another cluster (kind, a remote one).
This module reads settings; it runs nothing (``_cluster.py`` loads images).
"""

from __future__ import annotations

import functools
import os
import shlex
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tether_api.envcheck import reject_unknown

__all__ = ["IMAGES", "E2ESettings", "SettingsError", "settings"]

REPO_ROOT = Path(__file__).resolve().parents[2]
TETHER_CACHE = Path(os.environ.get("TETHER_CACHE", Path.home() / ".cache" / "tether"))
# The images the suites run in pods (images/<name>/Dockerfile; hack/images.sh builds them too).
IMAGES = ("base", "sidecar", "operator", "agent", "evaluator")


def _project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


class SettingsError(RuntimeError):
    """A TETHER_E2E_* variable is unknown or has a wrong value; the message names it."""


class E2ESettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_E2E_", extra="forbid")

    image_prefix: str = Field("docker.io/tether", description="Registry and path of the "
                              "images: <prefix>/<name>:<tag>.")
    image_tag: str = Field(default_factory=_project_version, description="Tag of every image: "
                           "the project version in pyproject.toml.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of every pod the tests start (the "
        "operator's sidecar and the chart's operator included).")
    load_images: str | None = Field(None, description="A command to which the image refs "
                                    "are appended, run once per session before the tests, "
                                    "e.g. `kind load docker-image --name tether`. Unset: the "
                                    "images are already where the nodes find them.")
    storage_class: str | None = Field(None, description="StorageClass of the tests' claims "
                                      "(unset: the cluster's default class).")
    host_ip: str | None = Field(None, description="Address pods reach this machine on, where "
                                "the test doubles listen (unset: the address this machine "
                                "uses to reach the node).")
    artifacts: Path = Field(TETHER_CACHE / "e2e-artifacts", description="Where a failed "
                            "cluster test's logs are collected.")
    no_start: bool = Field(False, description="Never start the local cluster; fail instead.")

    @model_validator(mode="after")
    def _known(self) -> E2ESettings:
        reject_unknown("TETHER_E2E_", type(self).model_fields)
        if self.load_images is not None and not shlex.split(self.load_images):
            raise ValueError("TETHER_E2E_LOAD_IMAGES is set but empty; unset it or give a "
                             "command such as `kind load docker-image`")
        return self

    def image(self, name: str) -> str:
        """The full ref of one of IMAGES: ``docker.io/tether/agent:0.1.0`` by default."""
        return f"{self.image_prefix.rstrip('/')}/{name}:{self.image_tag}"

    def container(self, name: str) -> dict[str, str]:
        """The image fields of a container spec running image ``name``."""
        return {"image": self.image(name), "imagePullPolicy": self.image_pull_policy}

    def load_command(self) -> list[str] | None:
        """The load command with every image ref appended, or None when nothing is loaded."""
        if self.load_images is None:
            return None
        return [*shlex.split(self.load_images), *(self.image(n) for n in IMAGES)]


@functools.cache
def settings() -> E2ESettings:
    """The settings, read once; SettingsError says which variable is wrong and how."""
    try:
        return E2ESettings()
    except ValidationError as exc:
        raise SettingsError(f"invalid TETHER_E2E_* settings: {exc}") from exc
