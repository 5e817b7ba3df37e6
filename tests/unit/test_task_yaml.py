"""The task is read with libyaml's loader when PyYAML has it, the pure-Python one when it does
not, with the same result either way (tether_api.agenttask.yaml_loader)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tether_api import InvalidAgentTask, load_agenttask
from tether_api.agenttask import yaml_loader
from tether_sidecar import taskfile

ROOT = Path(__file__).parents[2]
# Every YAML the project ships: the samples, the examples, the chart's values.
SHIPPED = sorted([*ROOT.glob("crds/samples/*.yaml"), *ROOT.glob("examples/**/*.yaml"),
                  *ROOT.glob("charts/*/values.yaml")])
TASKS = [p for p in SHIPPED if "kind: AgentTask\n" in p.read_text()]

# What the two loaders could disagree on: YAML 1.1 scalars, anchors, merge keys, block text.
TRICKY = """\
apiVersion: tether.dev/v1alpha1
kind: AgentTask
metadata: {name: t1, namespace: team-a, generation: 7}
base: &base {retries: 3, on: [yes, no, off, "on"], when: 2026-11-30, octal: 0o17, old: 017}
derived: {<<: *base, retries: 4, float: 1e3, inf: .inf, empty: ~, hex: 0x1F}
text: |
  line one
    indented
folded: >-
  two
  lines
unicode: "caf\\u00e9 \U0001F600"
"""


def test_libyaml_is_there_to_be_used() -> None:
    # The image and the venv install PyYAML's wheel, which bundles libyaml: without it the
    # fallback below is what every start would pay, silently.
    assert yaml_loader() is yaml.CSafeLoader


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_shipped_file_reads_the_same_with_either_loader(path: Path) -> None:
    text = path.read_text()
    assert list(yaml.load_all(text, Loader=yaml.CSafeLoader)) == list(yaml.safe_load_all(text))


def test_tricky_scalars_read_the_same_with_either_loader() -> None:
    fast = yaml.load(TRICKY, Loader=yaml.CSafeLoader)
    assert fast == yaml.safe_load(TRICKY)
    assert fast["derived"]["retries"] == 4 and fast["derived"][True][0] is True  # YAML 1.1: on, yes


def test_without_libyaml_the_task_is_read_the_same(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    assert TASKS, "no AgentTask YAML found under crds/samples or examples"
    with_c = [load_agenttask(p) for p in TASKS]
    monkeypatch.delattr(yaml, "CSafeLoader")
    assert yaml_loader() is yaml.SafeLoader
    assert [load_agenttask(p) for p in TASKS] == with_c
    loaded = taskfile.load(TASKS[0])
    assert loaded.task == with_c[0]


@pytest.mark.parametrize("libyaml", [True, False])
def test_not_yaml_is_refused_naming_the_file(libyaml: bool, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    if not libyaml:
        monkeypatch.delattr(yaml, "CSafeLoader")
    bad = tmp_path / "task.yaml"
    bad.write_text("spec: [unclosed\n")
    for load in (load_agenttask, taskfile.load):
        with pytest.raises(InvalidAgentTask, match="not valid YAML") as caught:
            load(bad)
        assert str(bad) in str(caught.value)
