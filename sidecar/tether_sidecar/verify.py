"""Checks a tool's response must pass to count as a success, one small callable each.

A check takes a :class:`ToolResponse` and returns a :class:`~tether_sidecar.retry.Failure` or
None; :func:`chain` runs them in order and stops at the first failure, like tenacity composes its
stop and wait strategies. :func:`checks_for` builds the chain a ToolSpec's ``verify`` asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from tether_api import VerifySpec

from .retry import Failure, parse_retry_after

__all__ = ["Check", "ToolResponse", "chain", "checks_for"]

_MISSING = object()


@dataclass
class ToolResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    _json: Any = field(default=_MISSING, repr=False)

    @cached_property
    def is_json(self) -> bool:
        ctype = self.headers.get("content-type", "").lower()
        return "json" in ctype

    def json(self) -> Any:
        if self._json is _MISSING:
            self._json = orjson.loads(self.body)
        return self._json


Check = Callable[[ToolResponse], Failure | None]


def expect_status(codes: Sequence[int]) -> Check:
    allowed = frozenset(codes)

    def check(r: ToolResponse) -> Failure | None:
        if r.status in allowed:
            return None
        snippet = r.body[:200].decode("utf-8", "replace")
        return Failure(
            cls=str(r.status),
            reason=f"HTTP {r.status} (expected {sorted(allowed)}): {snippet}".rstrip(": "),
            retry_after=parse_retry_after(r.headers.get("retry-after")),
            status=r.status,
        )

    return check


def non_empty(r: ToolResponse) -> Failure | None:
    if r.status == 204 or r.body.strip():  # 204 No Content is empty by definition
        return None
    return Failure("empty", f"HTTP {r.status} with an empty body", status=r.status)


def well_formed(r: ToolResponse) -> Failure | None:
    if not r.is_json or not r.body.strip():
        return None
    try:
        r.json()
    except orjson.JSONDecodeError as exc:
        return Failure("malformed", f"body is not valid JSON: {exc}", status=r.status)
    return None


def _lookup(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def _parsed(r: ToolResponse) -> tuple[Any, Failure | None]:
    try:
        return r.json(), None
    except orjson.JSONDecodeError as exc:
        return None, Failure("malformed", f"body is not valid JSON: {exc}", status=r.status)


def required_fields(names: Sequence[str]) -> Check:
    def check(r: ToolResponse) -> Failure | None:
        doc, bad = _parsed(r)
        if bad:
            return bad
        missing = [n for n in names if _lookup(doc, n) is _MISSING]
        if not missing:
            return None
        return Failure("fields", f"response lacks required field(s): {', '.join(missing)}",
                       status=r.status)

    return check


def matches_schema(schema: dict[str, Any]) -> Check:
    # Imported here: only tools with a schema need it, and it costs every sidecar ~20 ms of
    # start-up and ~2 MB (docs/benchmarks.md, the footprint section).
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)

    def check(r: ToolResponse) -> Failure | None:
        doc, bad = _parsed(r)
        if bad:
            return bad
        error = next(iter(validator.iter_errors(doc)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Failure("schema", f"response does not match the schema at {where}: "
                       f"{error.message}", status=r.status)

    return check


def checks_for(spec: VerifySpec) -> list[Check]:
    checks: list[Check] = [expect_status(spec.expect_status)]
    if spec.non_empty:
        checks.append(non_empty)
    checks.append(well_formed)
    if spec.required_fields:
        checks.append(required_fields(spec.required_fields))
    if spec.schema_ is not None:
        checks.append(matches_schema(spec.schema_))
    return checks


def chain(checks: Sequence[Check], response: ToolResponse) -> Failure | None:
    for check in checks:
        failure = check(response)
        if failure is not None:
            return failure
    return None
