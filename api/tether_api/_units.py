"""Value types for durations and money, as they are written in an AgentTask.

Durations are strings like ``"500ms"``, ``"30s"``, ``"1m30s"``; money is a decimal string like
``"5.00"``. Both stay strings on the wire (so a GitOps diff shows what the user wrote) and expose
their parsed value. Floats are refused for money on purpose: ``0.1 + 0.2`` is not ``0.3``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

__all__ = ["DURATION_PATTERN", "MONEY_PATTERN", "Duration", "Money", "parse_duration"]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
MONEY_PATTERN = r"^[0-9]+(\.[0-9]{1,6})?$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError with an example of a valid value."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a duration: write a number with a unit, e.g. \"500ms\", \"30s\", "
            "\"5m\", \"1h\" or \"1m30s\""
        )
    return sum(float(num) * _SCALE[unit] for num, unit in _PART.findall(text))


def _check_duration(value: Any) -> str:
    parse_duration(value)
    return str(value)


def _to_money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"{value!r} is not a money amount: write a quoted decimal string in USD, e.g. \"5.00\""
        )
    if not re.fullmatch(MONEY_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a money amount: a non-negative decimal with at most 6 decimals, "
            "e.g. \"5.00\""
        )
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pattern already checked; kept for a clear message
        raise ValueError(f"{value!r} is not a decimal number") from exc


def _money_str(value: Decimal) -> str:
    return format(value, "f")


Duration = Annotated[
    str,
    BeforeValidator(_check_duration),
    Field(json_schema_extra={"pattern": DURATION_PATTERN}),
]
"""A duration string; call :func:`parse_duration` for seconds."""

Money = Annotated[
    Decimal,
    BeforeValidator(_to_money),
    PlainSerializer(_money_str, return_type=str),
    Field(json_schema_extra={"type": "string", "pattern": MONEY_PATTERN}),
]
"""USD as a Decimal, written as a decimal string."""
