"""The evaluation resources' rules, twice: CEL for the CRD and Python for the models; and their
small value types (Fraction, LocalRef).

Each pair says the same thing in the same words, so a user gets one message whether the API
server or tether_api refused the object. Kept apart from the models so they read as their
fields.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, JsonValue, PlainSerializer
from pydantic.config import JsonDict

from ._base import ApiModel
from ._units import MONEY_PATTERN

__all__ = [
    "CAPS_RULES",
    "CHECK_RULES",
    "DETECTOR_RULES",
    "FRACTION_PATTERN",
    "PINNED_RULES",
    "RUBRIC_IMMUTABLE",
    "SAMPLES_RULE",
    "UNIQUE_CHECKS",
    "VERDICT_RULES",
    "Fraction",
    "LocalRef",
    "check_caps",
    "check_detector",
    "check_pinned",
    "check_regex",
    "check_samples",
    "check_verdict",
    "unique_checks",
]

FRACTION_PATTERN = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"
_DATED = r"-([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8})$"
_DATED_PROVIDERS = ("openai", "anthropic")

RUBRIC_MESSAGE = "Rubric spec is immutable: create a new Rubric and point the policy at it"
LATEST_MESSAGE = ("model.name must be a pinned snapshot, not an alias containing latest: name a "
                  "dated snapshot, e.g. gpt-4o-2024-08-06")
DATED_MESSAGE = ("model.name must end in a date snapshot (-YYYY-MM-DD or -YYYYMMDD) for provider "
                 "openai or anthropic, e.g. gpt-4o-2024-08-06 or claude-3-5-sonnet-20241022")
SAMPLES_MESSAGE = "samples must be odd (1, 3, 5, 7 or 9) so the majority vote cannot tie"
THRESHOLD_MESSAGE = ("verdict.passThreshold is required with kind score and not allowed with "
                     "kind pass_fail")
ONE_CHECK_MESSAGE = ("a check needs exactly one of jsonSchema and regex: set one, remove the "
                     "other")
UNIQUE_MESSAGE = "check names must be unique: rename or remove the repeated check"
PER_CALL_POSITIVE = "costCaps.perCallUSD must be above 0"
PER_DAY_POSITIVE = "costCaps.perDayUSD must be above 0"
PER_CALL_BELOW_DAY = ("costCaps.perCallUSD must not exceed costCaps.perDayUSD: lower the call "
                      "cap or raise the daily one")
SHIFT_POSITIVE = "detector.shift must be above 0"
SHIFT_BELOW_BASELINE = "detector.shift must be below detector.baselinePassRate"
BASELINE_BELOW_ONE = "detector.baselinePassRate must be below 1"


def _rule(rule: str, message: str, field: str | None = None) -> JsonDict:
    out: JsonDict = {"rule": rule, "message": message}
    if field:
        out["fieldPath"] = field
    return out


def _guarded(*fields: str) -> str:
    """A malformed amount has its own error (the pattern); don't add a conversion error."""
    return " || ".join(f"!self.{f}.matches(r'{MONEY_PATTERN}')" for f in fields) + " || "


RUBRIC_IMMUTABLE = _rule("self == oldSelf", RUBRIC_MESSAGE)
VERDICT_RULES: list[JsonValue] = [_rule("self.kind == 'score' ? has(self.passThreshold) : "
                       "!has(self.passThreshold)", THRESHOLD_MESSAGE, ".passThreshold")]
PINNED_RULES: list[JsonValue] = [
    _rule("!self.name.lowerAscii().contains('latest')", LATEST_MESSAGE, ".name"),
    _rule(f"!(self.provider in {list(_DATED_PROVIDERS)!r}) || self.name.matches(r'{_DATED}')",
          DATED_MESSAGE, ".name"),
]
CAPS_RULES: list[JsonValue] = [
    _rule(_guarded("perCallUSD") + "double(self.perCallUSD) > 0.0", PER_CALL_POSITIVE,
          ".perCallUSD"),
    _rule(_guarded("perDayUSD") + "double(self.perDayUSD) > 0.0", PER_DAY_POSITIVE,
          ".perDayUSD"),
    _rule(_guarded("perCallUSD", "perDayUSD")
          + "double(self.perCallUSD) <= double(self.perDayUSD)", PER_CALL_BELOW_DAY,
          ".perCallUSD"),
]
SAMPLES_RULE = _rule("self % 2 == 1", SAMPLES_MESSAGE)
CHECK_RULES: list[JsonValue] = [_rule("has(self.jsonSchema) != has(self.regex)", ONE_CHECK_MESSAGE)]
UNIQUE_CHECKS = _rule("self.all(c, self.exists_one(d, d.name == c.name))", UNIQUE_MESSAGE)
_FRACTIONS = f"!self.shift.matches(r'{FRACTION_PATTERN}') || " \
    f"!self.baselinePassRate.matches(r'{FRACTION_PATTERN}') || "
DETECTOR_RULES: list[JsonValue] = [
    _rule(f"!has(self.shift) || !self.shift.matches(r'{FRACTION_PATTERN}') || "
          "double(self.shift) > 0.0", SHIFT_POSITIVE, ".shift"),
    _rule(f"!has(self.shift) || {_FRACTIONS}double(self.shift) < double(self.baselinePassRate)",
          SHIFT_BELOW_BASELINE, ".shift"),
    _rule(f"!self.baselinePassRate.matches(r'{FRACTION_PATTERN}') || "
          "double(self.baselinePassRate) < 1.0", BASELINE_BELOW_ONE, ".baselinePassRate"),
]


def check_verdict(kind: str, threshold: Decimal | None) -> None:
    if (kind == "score") != (threshold is not None):
        raise ValueError(THRESHOLD_MESSAGE)


def check_pinned(provider: str, name: str) -> None:
    if "latest" in name.lower():
        raise ValueError(LATEST_MESSAGE)
    if provider in _DATED_PROVIDERS and not re.search(_DATED, name):
        raise ValueError(DATED_MESSAGE)


def check_samples(samples: int) -> int:
    if samples % 2 != 1:
        raise ValueError(SAMPLES_MESSAGE)
    return samples


def check_caps(per_call: Decimal, per_day: Decimal) -> None:
    if per_call <= 0:
        raise ValueError(PER_CALL_POSITIVE)
    if per_day <= 0:
        raise ValueError(PER_DAY_POSITIVE)
    if per_call > per_day:
        raise ValueError(PER_CALL_BELOW_DAY)


def check_detector(baseline: Decimal, shift: Decimal) -> None:
    if shift <= 0:
        raise ValueError(SHIFT_POSITIVE)
    if shift >= baseline:
        raise ValueError(SHIFT_BELOW_BASELINE)
    if baseline >= 1:
        raise ValueError(BASELINE_BELOW_ONE)


def check_regex(json_schema: dict[str, Any] | None, regex: str | None) -> None:
    """Exactly one of the two, and that one usable by the sidecar."""
    if (json_schema is None) == (regex is None):
        raise ValueError(ONE_CHECK_MESSAGE)
    if regex is not None:
        import regex as engine  # the sidecar's (eval_record.py), so both agree on what compiles

        try:
            engine.compile(regex)
        except engine.error as exc:
            raise ValueError(f"regex {regex!r} does not compile: {exc}") from exc
    if json_schema is not None:
        from jsonschema import Draft202012Validator, SchemaError  # ~2 MB: only when used

        try:
            Draft202012Validator.check_schema(json_schema)
        except SchemaError as exc:
            raise ValueError(f"jsonSchema is not a valid JSON Schema: {exc.message}") from exc


def unique_checks(names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{UNIQUE_MESSAGE}; repeated: {', '.join(dupes)}")


def _to_fraction(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"{value!r} is not a fraction: write a quoted decimal between 0 and 1, "
                         "e.g. \"0.1\"")
    if not re.fullmatch(FRACTION_PATTERN, text):
        raise ValueError(f"{value!r} is not a fraction: a quoted decimal between 0 and 1 with at "
                         "most 6 decimals, e.g. \"0.1\"")
    return Decimal(text)


def _fraction_str(value: Decimal) -> str:
    """The shortest form: "0.70" and "0.7" are one value, and rubric_hash must see one text."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


Fraction = Annotated[
    Decimal,
    BeforeValidator(_to_fraction),
    PlainSerializer(_fraction_str, return_type=str),
    Field(json_schema_extra={"type": "string", "pattern": FRACTION_PATTERN, "maxLength": 8}),
]
"""A decimal between 0 and 1 written as a string (``"0.1"``): exact, unlike a float."""

_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class LocalRef(ApiModel):
    """An object of the given kind in the policy's own namespace."""

    name: str = Field(pattern=_NAME, max_length=253, description="Name of the object.")
