"""The operator's login through kubernetes_asyncio's loaders: which kubeconfig forms reach kopf
and our client, what is refused (never anonymous), the in-cluster service account. No cluster:
files in tmp_path, real plugin processes, real OpenSSL (tests/integration/test_kubeconfig_*
log in to a real API server with each form)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether_operator import credentials
from tether_operator.credentials import CredentialsError, load


def kubeconfig(path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None,
               context: str = "dev", **extra: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u",
                                                 "namespace": "team-a"}}],
        **extra}))
    return path


@pytest.fixture(autouse=True)
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real self-signed certificate and key (openssl), for paths that OpenSSL loads."""
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=test", "-days", "1",
                    "-keyout", str(d / "admin.key"), "-out", str(d / "admin.crt")],
                   check=True, capture_output=True)
    return d


def test_client_certificate_paths_are_relative_to_their_kubeconfig(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Path) -> None:
    (tmp_path / "conf").symlink_to(pki, target_is_directory=True)
    conf = kubeconfig(tmp_path / "config", {"client-certificate": "conf/admin.crt",
                                            "client-key": "conf/admin.key"},
                      {"server": "https://10.0.0.1:6443",
                       "certificate-authority": "conf/admin.crt"})
    monkeypatch.setenv("KUBECONFIG", str(conf))
    info = load()
    assert info.server == "https://10.0.0.1:6443"
    assert Path(str(info.certificate_path)).read_bytes() == (pki / "admin.crt").read_bytes()
    assert Path(str(info.private_key_path)).read_bytes() == (pki / "admin.key").read_bytes()
    assert info.default_namespace == "team-a" and info.token is None
    assert info.expiration is not None and info.expiration > datetime.now(UTC)
    assert info.as_ssl_context().get_ca_certs()  # the CA reached OpenSSL


def test_inline_certificate_data_reaches_openssl(tmp_path: Path, pki: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(
        tmp_path / "config", {"client-certificate-data": b64("admin.crt"),
                              "client-key-data": b64("admin.key")},
        {"server": "https://10.0.0.1:6443", "certificate-authority-data": b64("admin.crt")})))
    info = load()
    assert info.as_ssl_context().get_ca_certs()[0]["subject"] == ((("commonName", "test"),),)


def test_token_file_is_read_and_reread_within_a_minute(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("tok-1\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config",
                                                    {"tokenFile": str(tmp_path / "token")})))
    info = load()
    assert info.as_http_headers() == {"Authorization": "Bearer tok-1"}
    assert info.expiration is not None
    assert info.expiration <= datetime.now(UTC) + timedelta(minutes=1)
    (tmp_path / "token").write_text("tok-2")
    assert load().token == "tok-2"
    (tmp_path / "token").unlink()
    with pytest.raises(CredentialsError, match="token"):
        load()


def test_first_file_in_the_list_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "first"})
    second = kubeconfig(tmp_path / "b", {"token": "second"}, context="other",
                        contexts=[{"name": "other", "context": {"cluster": "c", "user": "u"}}])
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    assert load().token == "first"  # kubectl: the first current-context and user win


def plugin(tmp_path: Path, body: str) -> dict[str, Any]:
    script = tmp_path / "plugin.py"
    script.write_text(body)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(script)], "interactiveMode": "Never"}}


def test_exec_plugin_gives_the_token_and_its_expiry(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expires = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    user = plugin(tmp_path, "import json, os\n"
                  "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == "
                  "'ExecCredential'\n"
                  "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
                  "'kind': 'ExecCredential', 'status': {'token': 'from-plugin', "
                  f"'expirationTimestamp': '{expires}'}}}}))\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", user)))
    info = load()
    assert info.token == "from-plugin"
    stamp = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert info.expiration == stamp - credentials.EXEC_MARGIN  # refreshed before it expires


@pytest.mark.parametrize("body, message", [
    ("import sys\nsys.stderr.write('not logged in')\nsys.exit(3)\n", "not logged in"),
    ("print('{}')\n", "missing key"),
    ("import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
     "'kind': 'ExecCredential', 'status': {}}))\n", "gave no credentials"),
])
def test_a_failing_exec_plugin_is_refused_not_anonymous(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", plugin(tmp_path, body))))
    with pytest.raises(CredentialsError, match=message):
        load()


@pytest.mark.parametrize("user, message", [
    ({"auth-provider": {"name": "gcp", "config": {}}}, "removed in 1.26"),
    ({"auth-provider": {"name": "azure", "config": {}}}, "exec credential plugin"),
    ({"token": "t", "as": "someone-else"}, "impersonates"),
    ({"client-id": "x"}, "none of the credentials"),
])
def test_forms_we_cannot_honour_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            user: dict[str, Any], message: str) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", user)))
    with pytest.raises(CredentialsError, match=message):
        load()


def test_oidc_id_token_is_the_bearer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Unexpired (no exp claim): used as it is, no call to the issuer.
    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2ln"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"auth-provider": {
        "name": "oidc", "config": {"idp-issuer-url": "https://127.0.0.1:9", "client-id": "k",
                                   "id-token": token}}})))
    assert load().as_http_headers() == {"Authorization": f"Bearer {token}"}


def test_proxy_url_and_tls_server_name_reach_kopf(tmp_path: Path, pki: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"token": "t"}, {
        "server": "https://127.0.0.2:6443", "certificate-authority": str(pki / "admin.crt"),
        "proxy-url": "http://127.0.0.1:3128", "tls-server-name": "kubernetes"})))
    info = load()
    assert info.proxy_url == "http://127.0.0.1:3128"
    context = info.as_ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    tls = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="127.0.0.2")
    assert tls.server_hostname == "kubernetes"  # checked against the name, not the address


@pytest.mark.parametrize("text, message", [
    ("clusters: [", "not valid YAML"),
    ("contexts: []\ncurrent-context: gone\n", "gone"),
    ("contexts:\n- context:\n    cluster: nope\n  name: x\ncurrent-context: x\n", "nope"),
])
def test_broken_kubeconfig_names_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             text: str, message: str) -> None:
    (tmp_path / "config").write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    with pytest.raises(CredentialsError, match=message):
        load()


def test_in_cluster_uses_the_mounted_service_account(tmp_path: Path, pki: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("tether-system")
    (tmp_path / "ca.crt").write_bytes((pki / "admin.crt").read_bytes())
    monkeypatch.setattr(credentials, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    info = load()
    assert info.server == "https://[fd00::1]:443"
    assert info.token == "sa-token" and info.default_namespace == "tether-system"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.expiration is not None
    assert info.expiration <= datetime.now(UTC) + credentials.TOKEN_REREAD
    (tmp_path / "token").write_text("rotated")  # the kubelet rotates it in place
    assert load().token == "rotated"


@pytest.mark.parametrize("env, message", [
    ({"KUBECONFIG": "/nonexistent/config"}, "no kubeconfig at /nonexistent/config"),
    ({"KUBECONFIG": "/nonexistent/config", "TETHER_OPERATOR_LEASE_SECONDS": "1"},
     "LEASE_RENEW_SECONDS < LEASE_DEADLINE_SECONDS < LEASE_SECONDS"),
])
def test_operator_exits_2_naming_what_is_wrong(env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TETHER_OPERATOR_", "KUBERNETES_SERVICE"))}
    done = subprocess.run([sys.executable, "-m", "tether_operator"], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("election", ["true", "false"])
def test_an_unusable_form_exits_2_at_start_up(tmp_path: Path, election: str) -> None:
    conf = kubeconfig(tmp_path / "config", {"auth-provider": {"name": "gcp"}})
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TETHER_OPERATOR_", "KUBERNETES_SERVICE"))}
    done = subprocess.run([sys.executable, "-m", "tether_operator"],
                          env={**clean, "KUBECONFIG": str(conf), "TETHER_OPERATOR_OPS_PORT": "0",
                               "TETHER_OPERATOR_LEADER_ELECTION": election},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "'gcp' auth-provider" in done.stderr and "Traceback" not in done.stderr


def test_the_context_setting_picks_another_context(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").write_text(yaml.safe_dump({
        "current-context": "dev",
        "clusters": [{"name": "d", "cluster": {"server": "https://dev:6443"}},
                     {"name": "p", "cluster": {"server": "https://prod:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "d", "user": "u"}},
                     {"name": "prod", "context": {"cluster": "p", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    assert load().server == "https://dev:6443"
    assert load("prod").server == "https://prod:6443"


def test_a_certificate_rewritten_in_place_is_new_tls_material(
        tmp_path: Path, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kube.py keeps its connection pool while ``tls`` is unchanged; a rotated file (same
    path) must change it, or the old certificate would be used until a restart."""
    import asyncio
    for name in ("admin.crt", "admin.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(
        tmp_path / "config", {"client-certificate": str(tmp_path / "admin.crt"),
                              "client-key": str(tmp_path / "admin.key")})))
    first = asyncio.run(credentials.login()).tls  # computed now, as kube.py keeps it
    assert asyncio.run(credentials.login()).tls == first
    before = (tmp_path / "admin.crt").stat().st_mtime_ns
    (tmp_path / "admin.crt").write_bytes((pki / "admin.crt").read_bytes())
    os.utime(tmp_path / "admin.crt", ns=(before + 10**9, before + 10**9))
    assert asyncio.run(credentials.login()).tls != first
