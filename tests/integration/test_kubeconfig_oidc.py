"""The kubeconfig ``oidc`` auth-provider against a real kube-apiserver that trusts a local
issuer: a tiny HTTPS issuer (discovery, JWKS, a token endpoint whose refresh tokens work once)
signs RS256 id-tokens with openssl; a dedicated control-plane-only apiserver (its own etcd, the
test cluster's certificates) trusts it through ``--authentication-config``, so the shared
cluster is never restarted (marker ``local_cluster``). Our client and kopf's session both log in
as the OIDC user, from a valid id-token and from an expired one refreshed with the refresh
token."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tether_operator import credentials
from tether_operator.credentials import CredentialsError

from .conftest import Kubectl, _free_ports, _kubectl_binary
from .test_kubeconfig_forms import admin, whoami_kopf, whoami_ours, write_kubeconfig

# local_cluster: the dedicated API server is started from the binary cache with the local
# cluster's certificates; on another cluster (kind) deselect it: -m "not local_cluster".
pytestmark = [pytest.mark.cluster, pytest.mark.local_cluster]
AUDIENCE = "tether-test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True,
                          check=True).stdout


@dataclass
class Issuer:
    """An OIDC issuer on 127.0.0.1 (HTTPS, self-signed), in a thread of its own: the API
    server fetches its keys while the test blocks."""

    dir: Path
    port: int
    refreshes: list[str] = field(default_factory=list)
    valid_refresh: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def id_token(self, lifetime: float, sub: str = "alice") -> str:
        now = int(time.time())
        head = b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
        body = b64url(json.dumps({"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now,
                                  "nbf": now - 5, "exp": int(now + lifetime)}).encode())
        signed = f"{head}.{body}".encode()
        signature = openssl("dgst", "-sha256", "-sign", str(self.dir / "sign.key"), data=signed)
        return f"{head}.{body}.{b64url(signature)}"

    def refresh_token(self) -> str:
        token = uuid.uuid4().hex
        self.valid_refresh.add(token)
        return token

    def app(self) -> web.Application:
        modulus = openssl("rsa", "-in", str(self.dir / "sign.key"), "-noout", "-modulus")
        n = bytes.fromhex(modulus.decode().strip().split("=", 1)[1])
        jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
                          "n": b64url(n), "e": b64url((65537).to_bytes(3, "big"))}]}

        async def discovery(_: web.Request) -> web.Response:
            return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                                      "token_endpoint": f"{self.url}/token",
                                      "id_token_signing_alg_values_supported": ["RS256"]})

        async def keys(_: web.Request) -> web.Response:
            return web.json_response(jwks)

        async def token(request: web.Request) -> web.Response:
            form = await request.post()
            used = str(form.get("refresh_token"))
            if form.get("grant_type") != "refresh_token" or used not in self.valid_refresh:
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.valid_refresh.discard(used)  # once only, as many issuers do
            self.refreshes.append(used)
            return web.json_response({"id_token": self.id_token(600),
                                      "refresh_token": self.refresh_token()})

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks", keys)
        app.router.add_post("/token", token)
        return app


def serve_in_thread(issuer: Issuer) -> tuple[threading.Event, threading.Thread]:
    import ssl
    ready, stop = threading.Event(), threading.Event()

    def run() -> None:
        async def main() -> None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(str(issuer.dir / "tls.crt"), str(issuer.dir / "tls.key"))
            runner = web.AppRunner(issuer.app(), shutdown_timeout=1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", issuer.port, ssl_context=tls).start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.2)
            await runner.cleanup()
        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30), "the OIDC issuer did not start"
    return stop, thread


@dataclass
class Oidc:
    issuer: Issuer
    cluster: dict[str, Any]


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def oidc(kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oidc]:
    pki = kubectl.kubeconfig.parent / "pki"
    if not (pki / "apiserver.crt").exists():
        pytest.fail(f"no {pki / 'apiserver.crt'}: the dedicated API server needs the local "
                    "cluster's certificates (make cluster-up); on another cluster deselect "
                    "this module: -m 'not local_cluster'", pytrace=False)
    d = tmp_path_factory.mktemp("oidc")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-subj", "/CN=issuer", "-days", "1", "-addext",
            "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "tls.key"), "-out",
            str(d / "tls.crt"))
    openssl("genrsa", "-out", str(d / "sign.key"), "2048")
    etcd_port, peer_port, api_port, issuer_port = _free_ports(4)
    issuer = Issuer(d, issuer_port)
    stop, thread = serve_in_thread(issuer)
    ca = (d / "tls.crt").read_text()
    (d / "auth.yaml").write_text(json.dumps({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration",
        "jwt": [{"issuer": {"url": issuer.url, "audiences": [AUDIENCE],
                            "certificateAuthority": ca},
                 "claimMappings": {"username": {"claim": "sub", "prefix": "oidc:"}}}]}))
    bin_dir = Path(_kubectl_binary()).parent
    procs = [start([str(bin_dir / "etcd"), "--data-dir", str(d / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                    "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                    "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                    "--listen-metrics-urls", "", "--log-level", "warn"], d / "etcd.log")]
    procs.append(start([
        str(bin_dir / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
        "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
        "--secure-port", str(api_port), "--service-cluster-ip-range", "10.97.0.0/16",
        "--client-ca-file", str(pki / "ca.crt"), "--tls-cert-file", str(pki / "apiserver.crt"),
        "--tls-private-key-file", str(pki / "apiserver.key"),
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--authorization-mode", "RBAC", "--authentication-config", str(d / "auth.yaml"),
        "--profiling=false", "--v", "1"], d / "apiserver.log"))
    cluster, user = admin(kubectl)
    cluster = {**cluster, "server": f"https://127.0.0.1:{api_port}"}
    own = Kubectl(kubectl.binary, write_kubeconfig(d / "admin", cluster, user))
    try:
        wait_until(lambda: own("get", "--raw", "/readyz").returncode == 0, procs,
                   d / "apiserver.log")
        wait_until(lambda: own("get", "namespace", "default").returncode == 0, procs,
                   d / "apiserver.log")
        # A role of its own: "view" gets its rules from the controller manager, not run here.
        own.ok("-n", "default", "create", "role", "reader", "--verb=get,list,watch",
               "--resource=configmaps")
        own.ok("-n", "default", "create", "rolebinding", "alice-reads", "--role=reader",
               "--user=oidc:alice")
        own.ok("-n", "default", "create", "configmap", "kube-root-ca.crt")  # no KCM here
        yield Oidc(issuer, cluster)
    finally:
        for p in reversed(procs):  # the apiserver, then its etcd
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:  # a throwaway: no need for a graceful stop
                p.kill()
                p.wait(15)
        stop.set()  # after the API server: none of its connections left open on the issuer
        thread.join(30)


def wait_until(ready: Any, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    for _ in range(240):
        if ready():
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.5)
    pytest.fail(f"the dedicated API server did not come up:\n{log.read_text()[-3000:]}")


def oidc_user(oidc: Oidc, **config: str) -> dict[str, Any]:
    return {"auth-provider": {"name": "oidc", "config": {
        "idp-issuer-url": oidc.issuer.url, "client-id": "tether",
        "idp-certificate-authority-data": base64.b64encode(
            (oidc.issuer.dir / "tls.crt").read_bytes()).decode(), **config}}}


async def whoami_when_trusted(oidc: Oidc) -> str:
    """The API server loads the issuer's keys in the background after it starts."""
    for _ in range(60):
        try:
            return await whoami_ours()
        except Exception as exc:  # 401 until the keys are in; anything else is re-raised
            if "401" not in str(exc):
                raise
        await asyncio.sleep(0.5)
    pytest.fail("the dedicated API server never accepted the issuer's id-token")


async def test_a_valid_id_token_logs_both_clients_in(oidc: Oidc, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    user = oidc_user(oidc, **{"id-token": oidc.issuer.id_token(600)})
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "c", oidc.cluster, user)))
    assert await whoami_when_trusted(oidc) == "oidc:alice"
    assert await whoami_kopf("default") == "oidc:alice"


async def test_an_expired_id_token_is_refreshed_once(oidc: Oidc, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(credentials, "_REFRESHED", {})
    refresh = oidc.issuer.refresh_token()
    user = oidc_user(oidc, **{"id-token": oidc.issuer.id_token(-60), "refresh-token": refresh,
                              "client-secret": "s"})
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "c", oidc.cluster, user)))
    assert await whoami_when_trusted(oidc) == "oidc:alice"
    assert await whoami_kopf("default") == "oidc:alice"
    # The refresh token was good once; later logins use the refreshed pair, not the file's.
    assert oidc.issuer.refreshes == [refresh]


async def test_an_expired_id_token_without_refresh_is_refused(
        oidc: Oidc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    user = oidc_user(oidc, **{"id-token": oidc.issuer.id_token(-60)})
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "c", oidc.cluster, user)))
    with pytest.raises(CredentialsError, match="no refresh-token"):
        await credentials.login()
    assert os.environ["KUBECONFIG"].endswith("/c")
