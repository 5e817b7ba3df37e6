"""What a start does not load: the evaluation resources' and AgentBudget's models (tether_api
imports them on first use), the Responses dialect (imported by the first Responses call) and
pydantic plugins (the sidecar turns pydantic's plugin scan off unless whoever starts it says
otherwise). Each costs start-up time: docs/benchmarks.md, the footprint section."""

from __future__ import annotations

from pathlib import Path

from .proc import Sidecar, task_doc


class ImportTimeSidecar(Sidecar):
    """The sidecar with ``-X importtime``: every module it imports is listed in its log."""

    def command(self) -> list[str]:
        python, *rest = super().command()
        return [python, "-X", "importtime", *rest]


def _imported(sc: Sidecar) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in sc.log().splitlines()
            if line.startswith("import time:")}


def test_a_start_builds_no_evaluation_models_and_no_responses_dialect(model_server: str,
                                                                      tmp_path: Path) -> None:
    sc = ImportTimeSidecar(tmp_path / "pod", task_doc(model_server)).start()
    assert sc.stop() == 0
    imported = _imported(sc)
    assert "tether_api.agenttask" in imported  # the listing is real
    for lazy in ("tether_api.evaluation", "tether_api.evaluation_policy", "tether_api.agentbudget",
                 "tether_sidecar.responses_dialect", "tether_sidecar.responses_chains"):
        assert lazy not in imported, lazy


def _plugin(where: Path, marker: Path) -> dict[str, str]:
    """An installed pydantic plugin (a distribution with an entry point in the ``pydantic``
    group) that leaves ``marker`` behind when pydantic loads it."""
    dist = where / "probe_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nprobe = probe_plugin:plugin\n")
    (where / "probe_plugin.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "class _Plugin:\n"
        "    def new_schema_validator(self, *args, **kwargs):\n"
        "        return None, None, None\n"
        "plugin = _Plugin()\n")
    return {"PYTHONPATH": str(where)}


def test_pydantic_plugins_are_not_looked_for_unless_asked(model_server: str,
                                                          tmp_path: Path) -> None:
    marker = tmp_path / "plugin-loaded"
    env = _plugin(tmp_path / "site", marker)
    sc = Sidecar(tmp_path / "pod", task_doc(model_server), env=env).start()
    assert sc.stop() == 0
    assert not marker.exists()
    # Whoever starts the sidecar may still want its plugins: an explicit empty value.
    asked = Sidecar(tmp_path / "pod2", task_doc(model_server),
                    env={**env, "PYDANTIC_DISABLE_PLUGINS": ""}).start()
    assert asked.stop() == 0
    assert marker.exists()  # the probe works: loaded when asked for
