"""TLS with a private CA and proxies from the environment, through ``make_upstream`` as the
sidecar builds its transport at start-up; real servers and a real proxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from yarl import URL

from tether_sidecar.errors import StartupError
from tether_sidecar.proxies import Proxies, ProxyConfigError
from tether_sidecar.settings import Settings
from tether_sidecar.upstream import TransportError, make_upstream

from .servers import ok, proxy_server, raw_server, read_request

CAP = 1024 * 1024


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


async def _tls_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while request := await read_request(reader):
        writer.write(ok(b"tls:" + request.split(b"\r\n\r\n", 1)[1]))


@pytest.fixture
async def tls_port(ca: trustme.CA) -> AsyncIterator[int]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    async with raw_server(_tls_echo, tls=ctx) as (port, _):
        yield port


async def test_private_ca_is_trusted_when_the_bundle_names_it(bundle: Path, tls_port: int
                                                              ) -> None:
    up = make_upstream(bundle, CAP, {})
    try:
        resp = await up.send("POST", f"https://localhost:{tls_port}/", {}, b"hi", 5)
    finally:
        await up.aclose()
    assert resp.body == b"tls:hi"


async def test_private_ca_is_refused_without_the_bundle(tls_port: int) -> None:
    up = make_upstream(None, CAP, {})
    try:
        with pytest.raises(TransportError) as err:
            await up.send("POST", f"https://localhost:{tls_port}/", {}, b"hi", 5)
    finally:
        await up.aclose()
    assert (err.value.kind, err.value.reached) == ("connection_refused", False)
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.reason


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_unusable_bundle_is_a_startup_error_naming_it(tmp_path: Path, content: bytes | None
                                                      ) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StartupError, match=r"--ca-bundle .*ca\.pem"):
        make_upstream(path, CAP, {})


async def test_https_goes_through_a_connect_proxy(bundle: Path, tls_port: int) -> None:
    async with proxy_server() as (proxy, log):
        env = {"HTTPS_PROXY": f"http://bob:s3cret@127.0.0.1:{proxy}", "HTTP_PROXY": ""}
        up = make_upstream(bundle, CAP, env)
        try:
            for body in (b"one", b"two"):
                resp = await up.send("POST", f"https://localhost:{tls_port}/x", {}, body, 5)
                assert resp.body == b"tls:" + body
        finally:
            await up.aclose()
    assert log.lines == [f"CONNECT localhost:{tls_port} HTTP/1.1"]  # one tunnel, kept alive
    assert log.auth == ["Basic " + base64.b64encode(b"bob:s3cret").decode()]


async def test_a_refused_tunnel_never_reached_the_server(bundle: Path, tls_port: int) -> None:
    async with proxy_server(refuse=403) as (proxy, _):
        up = make_upstream(bundle, CAP, {"https_proxy": f"127.0.0.1:{proxy}"})
        try:
            with pytest.raises(TransportError) as err:
                await up.send("POST", f"https://localhost:{tls_port}/", {}, b"", 5)
        finally:
            await up.aclose()
    assert (err.value.kind, err.value.reached) == ("connection_refused", False)
    assert "403" in err.value.reason and "CONNECT" in err.value.reason


async def test_http_goes_through_a_forward_proxy_and_no_proxy_bypasses_it() -> None:
    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(ok(b"direct"))

    async with proxy_server() as (proxy, log), raw_server(origin) as (port, _):
        env = {"HTTP_PROXY": f"http://127.0.0.1:{proxy}", "NO_PROXY": "internal.example"}
        up = make_upstream(None, CAP, env)
        bypass = make_upstream(None, CAP, {**env, "no_proxy": "localhost,127.0.0.0/8"})
        try:
            via = await up.send("GET", f"http://127.0.0.1:{port}/a?b=1", {}, b"", 5)
            direct = await bypass.send("GET", f"http://127.0.0.1:{port}/a", {}, b"", 5)
        finally:
            await up.aclose()
            await bypass.aclose()
    assert via.body == f"proxied GET http://127.0.0.1:{port}/a?b=1".encode()
    assert direct.body == b"direct"
    assert log.lines == [f"GET http://127.0.0.1:{port}/a?b=1 HTTP/1.1"]


NO_PROXY_CASES = [
    ("*", "http://anything.example/", True),
    ("example.com", "http://api.example.com/", True),
    (".example.com", "http://example.com/", True),
    ("example.com", "http://notexample.com/", False),
    ("svc:8080", "http://a.svc:8080/", True),
    ("svc:8080", "http://a.svc:9090/", False),
    ("10.0.0.0/8", "http://10.1.2.3/", True),
    ("10.0.0.0/8", "http://11.1.2.3/", False),
    ("::1", "http://[::1]:81/", True),
    ("", "http://127.0.0.1/", False),
]


@pytest.mark.parametrize(("no_proxy", "url", "bypassed"), NO_PROXY_CASES)
def test_no_proxy_rules(no_proxy: str, url: str, bypassed: bool) -> None:
    proxies = Proxies.from_environ({"http_proxy": "http://proxy:3128", "no_proxy": no_proxy})
    assert (proxies.route(URL(url)).proxy is None) is bypassed


def test_lower_case_wins_and_bad_values_name_the_variable() -> None:
    proxies = Proxies.from_environ({"HTTP_PROXY": "http://upper:1", "http_proxy": "http://low:2"})
    assert proxies.route(URL("http://x/")).proxy == URL("http://low:2")
    assert proxies.route(URL("https://x/")).proxy is None  # https has its own variable
    with pytest.raises(ProxyConfigError, match="HTTPS_PROXY"):
        Proxies.from_environ({"HTTPS_PROXY": "socks5://127.0.0.1:1080"})
    with pytest.raises(StartupError, match="NO_PROXY"):
        make_upstream(None, CAP, {"NO_PROXY": "host:port"})


def test_the_removed_client_switch_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_SIDECAR_UPSTREAM_CLIENT", "fast")
    with pytest.raises(ValueError, match="TETHER_SIDECAR_UPSTREAM_CLIENT"):
        Settings(task=tmp_path, state_dir=tmp_path, secrets_dir=tmp_path)
