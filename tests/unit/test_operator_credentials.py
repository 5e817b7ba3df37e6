"""The operator's credential loader: kubeconfig (merged list, relative paths, token files, exec
plugins) and the in-cluster service account. No cluster: files in tmp_path, a real plugin
process."""

from __future__ import annotations

import base64
import json
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


def test_client_certificate_paths_are_relative_to_their_kubeconfig(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    conf = kubeconfig(tmp_path / "conf" / "config", {"client-certificate": "pki/admin.crt",
                                                     "client-key": "pki/admin.key"},
                      {"server": "https://10.0.0.1:6443", "certificate-authority": "pki/ca.crt"})
    monkeypatch.setenv("KUBECONFIG", str(conf))
    info = load()
    assert info.server == "https://10.0.0.1:6443"
    assert info.certificate_path == str(tmp_path / "conf" / "pki" / "admin.crt")
    assert info.private_key_path == str(tmp_path / "conf" / "pki" / "admin.key")
    assert info.ca_path == str(tmp_path / "conf" / "pki" / "ca.crt")
    assert info.default_namespace == "team-a" and info.token is None
    assert info.expiration is not None and info.expiration > datetime.now(UTC)


def test_token_file_is_read_and_reread_soon(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("tok-1\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config",
                                                    {"tokenFile": "token"})))
    info = load()
    assert info.token == "tok-1" and info.as_http_headers() == {
        "Authorization": "Bearer tok-1"}
    assert info.expiration is not None
    assert info.expiration <= datetime.now(UTC) + credentials.TOKEN_REREAD
    (tmp_path / "token").write_text("tok-2")  # rotated: the next load sees it
    assert load().token == "tok-2"


def test_first_file_in_the_list_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "from-a"})
    second = kubeconfig(tmp_path / "b", {"token": "from-b"}, context="other")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    info = load()
    assert info.token == "from-a"


def test_exec_plugin_gives_the_token_and_its_expiry(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expires = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os, sys\n"
        "req = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert req['spec']['cluster']['server'] == 'https://10.0.0.1:6443', req\n"
        f"print(json.dumps({{'kind': 'ExecCredential', 'status': {{'token': "
        f"'exec-' + os.environ['WHO'] + '-' + sys.argv[1], "
        f"'expirationTimestamp': '{expires}'}}}}))\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": [str(plugin), "eks"], "env": [{"name": "WHO", "value": "me"}],
        "provideClusterInfo": True}})))
    info = load()
    assert info.token == "exec-me-eks"
    assert info.expiration is not None
    assert info.expiration <= datetime.fromisoformat(expires.replace("Z", "+00:00"))


def test_failing_exec_plugin_is_a_clear_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"exec": {
        "command": sys.executable, "args": ["-c", "import sys; sys.exit('token expired')"]}})))
    with pytest.raises(CredentialsError, match="exited 1: token expired"):
        load()


@pytest.mark.parametrize("doc, message", [
    ("clusters: [", "not valid YAML"),
    (yaml.safe_dump({"contexts": []}), "no current-context"),
    (yaml.safe_dump({"current-context": "gone", "contexts": []}), "context 'gone' not found"),
    (yaml.safe_dump({"current-context": "x", "contexts": [
        {"name": "x", "context": {"cluster": "nope"}}]}), "names 'nope'"),
])
def test_broken_kubeconfig_names_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             doc: str, message: str) -> None:
    (tmp_path / "config").write_text(doc)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    with pytest.raises(CredentialsError, match=message):
        load()


def test_in_cluster_uses_the_mounted_service_account(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "namespace").write_text("tether-system")
    (tmp_path / "ca.crt").write_text("unused here")
    monkeypatch.setattr(credentials, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    info = load()
    assert info.server == "https://[fd00::1]:443"
    assert info.token == "sa-token" and info.default_namespace == "tether-system"
    assert info.ca_path == str(tmp_path / "ca.crt")


def test_inline_data_passes_through_to_the_ssl_context(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(
        tmp_path / "config", {"token": "t"},
        {"server": "https://10.0.0.1:6443", "certificate-authority-data":
         base64.b64encode(b"not a certificate").decode()})))
    info = load()
    assert info.ca_data is not None
    with pytest.raises(ssl.SSLError):
        info.as_ssl_context()  # the data reached OpenSSL (and is rejected there)
    json.dumps(info.as_http_headers())  # the headers are plain strings


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
