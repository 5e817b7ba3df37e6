"""Each kubeconfig form logs in to a real kube-apiserver, for our client (``Kube``) and for
kopf (the ``ConnectionInfo`` our login handler gives it, in the very session class kopf's
watches use): client certificates (file and data), a rotating tokenFile, an exec plugin with
expiry, ``proxy-url`` through a local CONNECT proxy that counts its tunnels, ``tls-server-name``
with the server reached by an address its certificate does not name. The OIDC auth-provider:
test_kubeconfig_oidc.py."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kopf._cogs.clients.auth import APIContext  # the session kopf's watches and patches use

from tether_operator.credentials import load
from tether_operator.kube import ApiError, Kube

from .conftest import Kubectl

pytestmark = pytest.mark.cluster
REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


def admin(kubectl: Kubectl) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user sections of the admin kubeconfig, data inlined."""
    doc = yaml.safe_load(kubectl.ok("config", "view", "--raw", "--minify", "--flatten"))
    return doc["clusters"][0]["cluster"], doc["users"][0]["user"]


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}]}))
    return path


async def whoami_ours() -> str:
    kube = Kube(timeout=20)
    try:
        doc = await kube.request("POST", REVIEW, {"apiVersion": "authentication.k8s.io/v1",
                                                  "kind": "SelfSubjectReview"})
    finally:
        await kube.close()
    return str(doc["status"]["userInfo"]["username"])


async def whoami_kopf(namespace: str) -> str:
    """Log in as kopf does, then a review and a watch through kopf's own session."""
    info = await asyncio.to_thread(load)
    context = APIContext(info)
    try:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        async with context.session.post(info.server + REVIEW, json=body) as resp:
            assert resp.status == 201, await resp.text()
            user = str((await resp.json())["status"]["userInfo"]["username"])
        watch = f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=1"
        async with context.session.get(info.server + watch) as resp:
            assert resp.status == 200, await resp.text()
            events = [json.loads(line) async for line in resp.content if line.strip()]
        assert any(e["object"]["metadata"]["name"] == "kube-root-ca.crt" for e in events)
    finally:
        await context.close()
    return user


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def reader(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """Service accounts that may read configmaps in the test namespace."""
    for sa in ("reader-a", "reader-b"):
        kubectl.ok("-n", namespace, "create", "serviceaccount", sa)
        kubectl.ok("-n", namespace, "create", "rolebinding", sa, "--clusterrole=view",
                   f"--serviceaccount={namespace}:{sa}")
    yield namespace


def sa_token(kubectl: Kubectl, namespace: str, sa: str, bound_secret: str) -> str:
    """A token that stops working when ``bound_secret`` is deleted (as a revoked one does)."""
    kubectl.ok("-n", namespace, "create", "secret", "generic", bound_secret)
    return kubectl.ok("-n", namespace, "create", "token", sa, "--bound-object-kind=Secret",
                      f"--bound-object-name={bound_secret}").strip()


async def test_client_certificate_as_data_and_as_files(kubectl: Kubectl, namespace: str,
                                                      tmp_path: Path,
                                                      env: pytest.MonkeyPatch) -> None:
    cluster, user = admin(kubectl)
    assert "client-certificate-data" in user, "the test cluster's admin logs in by certificate"
    env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "data", cluster, user)))
    name = await whoami_ours()
    assert name == await whoami_kopf(namespace)
    for field in ("client-certificate", "client-key"):
        (tmp_path / field).write_bytes(base64.b64decode(user.pop(f"{field}-data")))
        user[field] = field  # relative to the kubeconfig's folder
    env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "files", cluster, user)))
    assert await whoami_ours() == name == await whoami_kopf(namespace)


async def test_token_file_rotation_is_followed(kubectl: Kubectl, reader: str, tmp_path: Path,
                                              env: pytest.MonkeyPatch) -> None:
    cluster, _ = admin(kubectl)
    token = tmp_path / "token"
    token.write_text(sa_token(kubectl, reader, "reader-a", "bound-a"))
    env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", cluster,
                                                  {"tokenFile": str(token)})))
    kube = Kube(timeout=20)
    try:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        doc = await kube.request("POST", REVIEW, review)
        assert doc["status"]["userInfo"]["username"].endswith(":reader-a")
        # Rotated: the new token in the file, the old one no longer valid.
        old = token.read_text()
        token.write_text(sa_token(kubectl, reader, "reader-b", "bound-b"))
        kubectl.ok("-n", reader, "delete", "secret", "bound-a", "--wait=true")
        await refused(cluster, old)
        doc = await kube.request("POST", REVIEW, review)  # 401, login again, the new token
        assert doc["status"]["userInfo"]["username"].endswith(":reader-b")
    finally:
        await kube.close()
    assert (await whoami_kopf(reader)).endswith(":reader-b")


async def refused(cluster: dict[str, Any], token: str) -> None:
    """Until the API server refuses ``token`` (it caches a good token for ~10 s)."""
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    tls = ssl.create_default_context(cadata=ca)
    async with aiohttp.ClientSession() as http:
        for _ in range(120):
            async with http.get(cluster["server"] + "/api", ssl=tls,
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status == 401:
                    return
            await asyncio.sleep(0.5)
    pytest.fail("the API server still accepts a token bound to a deleted secret after 60 s")


EXEC_PLUGIN = """\
import json, sys
from datetime import datetime, timedelta, timezone
calls, token, lifetime = sys.argv[1], open(sys.argv[2]).read().strip(), float(sys.argv[3])
open(calls, "a").write("x")
expires = datetime.now(timezone.utc) + timedelta(seconds=lifetime)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": token,
                             "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
"""


async def test_exec_plugin_runs_again_when_its_token_expires(
        kubectl: Kubectl, reader: str, tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    cluster, _ = admin(kubectl)
    (tmp_path / "plugin.py").write_text(EXEC_PLUGIN)
    (tmp_path / "token").write_text(sa_token(kubectl, reader, "reader-a", "bound-exec"))
    calls = tmp_path / "calls"

    def plugin(lifetime: int) -> dict[str, Any]:
        return {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                         "command": sys.executable, "interactiveMode": "Never",
                         "args": [str(tmp_path / "plugin.py"), str(calls),
                                  str(tmp_path / "token"), str(lifetime)]}}

    # A token good for an hour: one run serves every call.
    env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "long", cluster, plugin(3600))))
    kube = Kube(timeout=20)
    try:
        configmaps = f"/api/v1/namespaces/{reader}/configmaps"
        for _ in range(3):
            await kube.request("GET", configmaps)
        assert calls.read_text() == "x"
        # One expiring within the margin: every login finds it expired and runs the plugin.
        env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "short", cluster, plugin(20))))
        await kube._client(force=True)
        await kube.request("GET", configmaps)
        await kube.request("GET", configmaps)
        assert calls.read_text() == "xxxx"
    finally:
        await kube.close()
    info = await asyncio.to_thread(load)
    assert info.expiration is not None and info.expiration < datetime.now(UTC) + timedelta(
        seconds=20)  # kopf logs in again before the plugin's stated expiry
    assert (await whoami_kopf(reader)).endswith(":reader-a")


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that counts the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await splice(reader, writer, up_reader, up_writer)


async def splice(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                 b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter) -> None:
    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        except ConnectionError:
            pass  # the other side went away: the tunnel is over either way
        finally:
            dst.close()

    await asyncio.gather(pump(a_reader, b_writer), pump(b_reader, a_writer))


@asynccontextmanager
async def serving(handler: Any, host: str) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_proxy_url_carries_both_clients(kubectl: Kubectl, namespace: str, tmp_path: Path,
                                              env: pytest.MonkeyPatch) -> None:
    cluster, user = admin(kubectl)
    proxy = ConnectProxy()
    async with serving(proxy.handle, "127.0.0.1") as port:
        cluster["proxy-url"] = f"http://127.0.0.1:{port}"
        env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", cluster, user)))
        await whoami_ours()
        ours = len(proxy.tunnels)
        await whoami_kopf(namespace)
    server = cluster["server"].removeprefix("https://")
    assert ours >= 1 and len(proxy.tunnels) > ours  # both went through it
    assert set(proxy.tunnels) == {server}


async def test_tls_server_name_verifies_an_address_the_certificate_does_not_name(
        kubectl: Kubectl, namespace: str, tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    cluster, user = admin(kubectl)
    host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        await splice(reader, writer, up_reader, up_writer)

    async with serving(relay, "127.0.0.2") as relay_port:
        cluster["server"] = f"https://127.0.0.2:{relay_port}"  # not in the certificate
        env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "plain", cluster, user)))
        with pytest.raises(ApiError, match=r"127\.0\.0\.2"):  # the control: refused as it should
            await whoami_ours()
        cluster["tls-server-name"] = "kubernetes"  # a name it does have
        env.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "named", cluster, user)))
        assert await whoami_ours() == await whoami_kopf(namespace)
