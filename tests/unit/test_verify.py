"""Each verification check alone, then the chain a ToolSpec builds."""

from __future__ import annotations

from typing import Any

import pytest

from tether_api import VerifySpec
from tether_sidecar.verify import (
    ToolResponse,
    chain,
    checks_for,
    expect_status,
    matches_schema,
    non_empty,
    required_fields,
    well_formed,
)

JSON = {"content-type": "application/json"}


def resp(status: int = 200, body: bytes = b'{"result": 1}', headers: dict[str, str] | None = None
         ) -> ToolResponse:
    return ToolResponse(status, headers if headers is not None else dict(JSON), body)


def test_expect_status() -> None:
    check = expect_status([200, 201])
    assert check(resp(201)) is None
    failure = check(resp(503, headers={"retry-after": "2"}))
    assert failure is not None and failure.cls == "503" and failure.retry_after == 2.0


def test_non_empty() -> None:
    assert non_empty(resp(body=b"  \n")).cls == "empty"  # type: ignore[union-attr]
    assert non_empty(resp(204, b"")) is None
    assert non_empty(resp(body=b"x")) is None


def test_well_formed_only_judges_json() -> None:
    assert well_formed(resp(body=b'{"a": [1, 2')).cls == "malformed"  # type: ignore[union-attr]
    assert well_formed(resp(body=b"plain text", headers={"content-type": "text/plain"})) is None


def test_required_fields_with_dotted_paths() -> None:
    check = required_fields(["result", "meta.page"])
    assert check(resp(body=b'{"result": 1, "meta": {"page": 2}}')) is None
    failure = check(resp(body=b'{"result": 1, "meta": {}}'))
    assert failure is not None and failure.cls == "fields" and "meta.page" in failure.reason


def test_schema_names_where_it_drifted() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"items": {"type": "array"}}}
    failure = matches_schema(schema)(resp(body=b'{"items": "not-a-list"}'))
    assert failure is not None and failure.cls == "schema" and "items" in failure.reason


@pytest.mark.parametrize(("status", "body", "cls"), [
    (200, b'{"result": [1]}', None),
    (500, b'{"error": 1}', "500"),
    (200, b"", "empty"),
    (200, b'{"result": [1', "malformed"),
    (200, b'{"items": []}', "fields"),
    (200, b'{"result": 42}', "schema"),
])
def test_chain_stops_at_the_first_failure(status: int, body: bytes, cls: str | None) -> None:
    spec = VerifySpec.model_validate({
        "requiredFields": ["result"],
        "schema": {"type": "object", "properties": {"result": {"type": "array"}}},
    })
    failure = chain(checks_for(spec), resp(status, body))
    assert (failure.cls if failure else None) == cls
