"""The operator's API client against a real HTTP server on 127.0.0.1 standing in for the API
server's edge cases that a real one will not produce on demand: a rotated token answered by
401, a 5xx with a non-JSON body, a 409 on create."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tether_operator.kube import ApiError, Kube
from tether_operator.leader import Lease, lease_client

TASK = "/apis/tether.dev/v1alpha1/namespaces/ns/agenttasks/t"


@pytest.fixture
async def server(unused_tcp_port: int) -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def task(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer new":
            return web.json_response({"kind": "Status", "reason": "Unauthorized",
                                      "message": "token expired"}, status=401)
        return web.json_response({"metadata": {"name": "t"}})

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="<html>upstream connect error</html>")

    async def exists(_: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "reason": "AlreadyExists",
                                  "message": "pods \"p\" already exists"}, status=409)

    app = web.Application()
    app.router.add_get(TASK, task)
    app.router.add_get("/apis/tether.dev/v1alpha1/namespaces/ns/agentbudgets", broken)
    app.router.add_post("/api/v1/namespaces/ns/pods", exists)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield f"http://127.0.0.1:{unused_tcp_port}", seen
    await runner.cleanup()


@pytest.fixture
def token_file(tmp_path: Path, server: tuple[str, list[str]],
               monkeypatch: pytest.MonkeyPatch) -> Path:
    token = tmp_path / "token"
    token.write_text("old")
    (tmp_path / "config").write_text(yaml.safe_dump({
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server[0]}}],
        "users": [{"name": "u", "user": {"tokenFile": str(token)}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return token


async def test_a_401_reloads_the_rotated_token_once(server: tuple[str, list[str]],
                                                    token_file: Path) -> None:
    kube = Kube()
    try:
        session, _, _ = await kube._client()  # logged in with "old"
        token_file.write_text("new")  # rotated on disk, as the kubelet does
        assert await kube.get_task("ns", "t") == {"metadata": {"name": "t"}}
        assert server[1] == ["Bearer old", "Bearer new"]  # one refusal, one retry
        assert (await kube._client())[0] is session  # same TLS: the session is kept
        token_file.write_text("revoked")
        await kube._client(force=True)
        with pytest.raises(ApiError) as err:  # still refused after the reload: an error
            await kube.get_task("ns", "t")
        assert err.value.status == 401 and "token expired" in str(err.value)
    finally:
        await kube.close()


async def test_errors_keep_status_and_body(server: tuple[str, list[str]],
                                           token_file: Path) -> None:
    kube = Kube()
    try:
        with pytest.raises(ApiError) as err:
            await kube.list_budgets("ns")
        assert err.value.status == 503 and "upstream connect error" in err.value.message
        pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}
        assert await kube.ensure(pod) is False  # 409 on create: it exists, not an error
    finally:
        await kube.close()


async def test_credentials_lost_after_login_are_retried_not_fatal(
        server: tuple[str, list[str]], token_file: Path) -> None:
    kube = Kube()
    try:
        await kube._client()
        token_file.unlink()  # mid-rotation: gone for a moment
        with pytest.raises(ApiError) as err:
            await kube._client(force=True)
        assert err.value.status == 0 and "reloading credentials" in str(err.value)
        token_file.write_text("new")
        assert await kube.get_task("ns", "t") == {"metadata": {"name": "t"}}
    finally:
        await kube.close()


async def test_a_hung_api_server_cannot_keep_a_leader_past_its_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lease's own client times out under the deadline: a server that accepts and never
    answers makes the leader step down instead of holding on."""
    answered = asyncio.Event()
    stuck: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stuck.append(writer)  # read the request, never answer
        await reader.readuntil(b"\r\n\r\n")
        answered.set()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "config").write_text(yaml.safe_dump({
        "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError, match="lease_client"):  # a worker-sized timeout is refused
        Lease(Kube(timeout=30), "ns", "l", "me", duration=3, renew=0.2, deadline=1)
    lease = Lease(lease_client(None, 0.2, 1), "ns", "l", "me", duration=3, renew=0.2,
                  deadline=1)
    lease.leading = True
    try:
        await asyncio.wait_for(lease.keep(), 30)  # returns: leadership given up
        assert answered.is_set() and not lease.leading
    finally:
        await lease.kube.close()
        for w in stuck:
            w.close()
        server.close()
