"""The fault-injecting tool server, driven with httpx over real loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def client(fault_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fault_url, timeout=5.0) as c:
        yield c


def hits(client: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = client.get("/_hits").json()["hits"]
    return counts


def test_ok_echoes_the_body_for_post_and_null_for_get(client: httpx.Client) -> None:
    posted = client.post("/ok", json={"q": "x"})
    got = client.get("/ok")

    assert posted.status_code == got.status_code == 200
    assert posted.json()["result"] == "ok"
    assert isinstance(posted.json()["items"], list)
    assert posted.json()["echo"] == {"q": "x"}
    assert got.json()["echo"] is None
    assert hits(client) == {"/ok": 2}


def test_non_json_body_is_a_400(client: httpx.Client) -> None:
    response = client.post("/ok", content=b"{nope")

    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


@pytest.mark.parametrize("code", [400, 404, 422, 500, 503])
def test_status_injects_that_status(client: httpx.Client, code: int) -> None:
    response = client.post("/status/" + str(code), json={})

    assert response.status_code == code
    assert response.json() == {"error": f"injected {code}"}


def test_status_rejects_a_code_that_is_not_a_status(client: httpx.Client) -> None:
    assert client.get("/status/999").status_code == 400
    assert client.get("/status/abc").status_code == 400


def test_flaky_fails_n_times_per_key_then_succeeds(client: httpx.Client) -> None:
    first = [client.post("/flaky/503/2", json={}).status_code for _ in range(3)]
    other_key = client.post("/flaky/503/2", json={}, headers={"X-Test-Key": "b"})

    assert first == [503, 503, 200]
    assert other_key.status_code == 503
    assert hits(client) == {"/flaky/503/2": 4}


def test_retry_after_sends_the_header_then_succeeds(client: httpx.Client) -> None:
    limited = client.get("/retry-after/2/1")
    then = client.get("/retry-after/2/1")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert then.status_code == 200
    assert then.json()["result"] == "ok"


def test_slow_outlasts_a_short_timeout_and_still_counts(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get("/slow/0.5", timeout=0.05)
    answered = client.get("/slow/0.01")

    assert answered.status_code == 200
    assert hits(client) == {"/slow/0.5": 1, "/slow/0.01": 1}


def test_reset_closes_the_connection_without_a_response(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadError) as error:
        client.post("/reset", json={})

    causes: list[BaseException] = []
    cause: BaseException | None = error.value
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    assert any(isinstance(c, ConnectionResetError) for c in causes), causes  # RST, not FIN
    assert hits(client) == {"/reset": 1}


def test_malformed_claims_json_but_is_not(client: httpx.Client) -> None:
    response = client.get("/malformed")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_empty_is_200_with_no_body(client: httpx.Client) -> None:
    response = client.post("/empty", json={})

    assert response.status_code == 200
    assert response.content == b""


def test_missing_field_and_schema_drift(client: httpx.Client) -> None:
    assert client.get("/missing-field").json() == {"items": []}
    assert client.get("/schema-drift").json() == {"result": 42, "items": "not-a-list"}


def test_side_effect_without_a_key_happens_every_time(client: httpx.Client) -> None:
    client.post("/side-effect", json={})
    client.post("/side-effect", json={})

    assert client.get("/_hits").json()["side_effects"] == [None, None]


def test_side_effect_replays_a_repeated_idempotency_key(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = client.post("/side-effect", json={}, headers=headers)
    again = client.post("/side-effect", json={}, headers=headers)

    state = client.get("/_hits").json()
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert state["side_effects"] == ["k-1"]
    assert state["idempotency_keys"] == ["k-1"]
    assert state["hits"] == {"/side-effect": 2}


def test_side_effect_happens_before_a_client_timeout(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "k-2"}
    with pytest.raises(httpx.ReadTimeout):
        client.post("/side-effect?delay=0.5", json={}, headers=headers, timeout=0.05)
    retried = client.post("/side-effect", json={}, headers=headers)

    assert client.get("/_hits").json()["side_effects"] == ["k-2"]
    assert retried.headers["Idempotent-Replayed"] == "true"


def test_reset_state_clears_everything(client: httpx.Client) -> None:
    client.get("/flaky/500/1")
    client.post("/side-effect", headers={"Idempotency-Key": "k"})
    client.post("/_reset").raise_for_status()

    assert client.get("/_hits").json() == {"hits": {}, "side_effects": [], "idempotency_keys": []}
    assert client.get("/flaky/500/1").status_code == 500  # the per-key counter restarted
