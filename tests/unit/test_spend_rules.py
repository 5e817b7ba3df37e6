"""The spend rules one by one: which failed attempts may have been billed, and which spec fields
a running sidecar applies live (they must be the edit table's live rows)."""

from __future__ import annotations

from typing import Any

import pytest

from tether_api import EDITS, AgentTaskSpec
from tether_sidecar.retry import Failure
from tether_sidecar.spend import billable
from tether_sidecar.taskfile import _LIVE


@pytest.mark.parametrize(("failure", "billed"), [
    (Failure("timeout", "timed out waiting for the response"), True),
    (Failure("connection", "reset mid-response"), True),
    (Failure("too_large", "over the cap"), True),  # the provider produced it all
    (Failure("502", "HTTP 502", status=502), True),  # a gateway: the provider may have run
    (Failure("504", "HTTP 504", status=504), True),
    (Failure("timeout", "timed out connecting", reached=False), False),
    (Failure("connection_refused", "refused", reached=False), False),
    (Failure("400", "HTTP 400", status=400), False),
    (Failure("429", "HTTP 429", status=429), False),
    (Failure("500", "HTTP 500", status=500), False),
    (Failure("503", "HTTP 503", status=503), False),
    (Failure("529", "HTTP 529", status=529), False),
    (Failure("quota", "insufficient_quota", status=429), False),
])
def test_which_failed_attempts_may_have_been_billed(failure: Failure, billed: bool) -> None:
    assert billable(failure) is billed


def _alias(model: Any, name: str) -> tuple[str, Any]:
    info = model.model_fields[name]
    return info.alias or name, info.annotation


def test_the_fields_applied_live_are_the_edit_tables_live_rows() -> None:
    live = set()
    for name, sub in _LIVE.items():
        alias, annotation = _alias(AgentTaskSpec, name)
        if sub is True:
            live.add(alias)
        else:
            live |= {f"{alias}.{_alias(annotation, s)[0]}" for s in sub}
    assert live == {path for path, kind in EDITS.items() if kind == "live"}
