"""Misspelled TETHER_* settings are refused, naming the variable and the likely intended one."""

from __future__ import annotations

import pytest

from tether_api.envcheck import reject_unknown
from tether_operator.settings import OperatorSettings
from tether_sidecar.settings import Settings


def test_known_and_foreign_variables_pass() -> None:
    reject_unknown("TETHER_OPERATOR_", ["workers"], {"TETHER_OPERATOR_WORKERS": "4",
                                                      "TETHER_SIDECAR_X": "1", "HOME": "/"})


def test_a_typo_names_the_setting_meant() -> None:
    with pytest.raises(ValueError, match=r"TETHER_OPERATOR_WORKER \(did you mean "
                                         r"TETHER_OPERATOR_WORKERS\?\)"):
        reject_unknown("TETHER_OPERATOR_", ["workers"], {"tether_operator_worker": "4"})


def test_both_settings_classes_refuse_unknown_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_OPERATOR_RESYNC_SECOND", "5")
    with pytest.raises(ValueError, match="TETHER_OPERATOR_RESYNC_SECONDS"):
        OperatorSettings()
    monkeypatch.delenv("TETHER_OPERATOR_RESYNC_SECOND")
    assert OperatorSettings().resync_seconds == 60.0
    monkeypatch.setenv("TETHER_SIDECAR_OPSPORT", "1")
    with pytest.raises(ValueError, match="TETHER_SIDECAR_OPS_PORT"):
        Settings(task="t.yaml", state_dir="/tmp", secrets_dir="/tmp")  # type: ignore[arg-type]
