"""Where the API server is and how to log in, read by ``kubernetes_asyncio``'s loaders.

One login for both API clients in the process: kopf's watches (``load``, a
``kopf.ConnectionInfo`` for its login handler) and ours (``login``, a ``Login`` that kube.py
turns into a ``kubernetes_asyncio`` REST client). Why that library: docs/operator.md.

In a cluster (``KUBERNETES_SERVICE_HOST`` and a service-account token, no ``KUBECONFIG``): the
service account, its token re-read every minute (the kubelet rotates it). Otherwise
``$KUBECONFIG`` or ``~/.kube/config``, its current context (the first file that sets one, as
kubectl) or the one named. The library reads client certificates (file and data), token,
tokenFile, username/password, exec plugins (their ``expirationTimestamp`` is the login's
expiry) and the ``oidc`` auth-provider (an expired id-token is refreshed with the refresh
token), and the cluster's CA, ``proxy-url`` and ``tls-server-name``.

Refused at login with a ``CredentialsError`` naming the field, never taken as anonymous:
auth-providers other than ``oidc`` (kubectl removed ``gcp`` and ``azure`` in 1.26: use their exec
plugins), impersonation (``as``...: we would act as ourselves, not as told), and a user
section from which no credential came out.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import yaml
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from kubernetes_asyncio.config.kube_config import ConfigNode, KubeConfigLoader, KubeConfigMerger
from kubernetes_asyncio.config.openid import OpenIDRequestor

__all__ = ["CredentialsError", "Login", "load", "login"]

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Rotated tokens (service account, tokenFile, OIDC) are re-read this often, as client-go does.
TOKEN_REREAD = timedelta(minutes=1)
# Static credentials (certificates, a fixed token) are still re-read now and then: cheap.
STATIC_REREAD = timedelta(minutes=10)
# An exec plugin's token is replaced this long before the expiry it states.
EXEC_MARGIN = timedelta(seconds=30)
_USER_FIELDS = {"client-certificate", "client-certificate-data", "client-key", "client-key-data",
                "token", "tokenFile", "username", "password", "exec", "auth-provider"}
_IMPERSONATION = {"as", "as-uid", "as-groups", "as-user-extra"}


class CredentialsError(Exception):
    """No usable credentials: the message says which file or field, and what to do."""


@dataclass(frozen=True)
class Login:
    """What one login produced: the library's client configuration and when to log in again."""

    config: Configuration
    expiration: datetime
    default_namespace: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> tuple[Any, ...]:
        """Everything a TLS connection depends on: when it changes, so must the pool."""
        c = self.config
        files = (c.ssl_ca_cert, c.cert_file, c.key_file)
        # A file rewritten in place (a rotated client certificate) counts as new material.
        stamps = tuple(os.stat(f).st_mtime_ns if f and os.path.exists(f) else None
                       for f in files)
        return (c.host, *files, *stamps, c.verify_ssl, c.tls_server_name, c.proxy)


def _now() -> datetime:
    return datetime.now(UTC)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists()
                and not os.environ.get("KUBECONFIG"))


async def login(context: str | None = None) -> Login:
    """Log in once: in a cluster or by kubeconfig; a ``CredentialsError`` when impossible."""
    config = Configuration()
    try:
        if _in_cluster():
            InClusterConfigLoader(str(SA_DIR / "token"), str(SA_DIR / "ca.crt"),
                                  try_refresh_token=False).load_and_set(config)
            namespace = SA_DIR / "namespace"
            return _finish(config, _now() + TOKEN_REREAD,
                           namespace.read_text().strip() if namespace.exists() else None)
        return await _kubeconfig(config, context)
    except yaml.YAMLError as exc:
        raise CredentialsError(f"a kubeconfig is not valid YAML: {exc}") from exc
    except (ConfigException, ValueError, aiohttp.ClientError) as exc:
        # The library's refusals, a malformed file, an OIDC issuer that cannot refresh.
        raise CredentialsError(f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # a file named in the kubeconfig, or the token, is unreadable
        raise CredentialsError(f"cannot read {exc.filename}: {exc.strerror}") from exc


def _paths() -> list[str]:
    env = os.environ.get("KUBECONFIG")
    paths = [p for p in env.split(os.pathsep) if p] if env else [
        str(Path.home() / ".kube" / "config")]
    if not any(Path(p).exists() for p in paths):
        raise CredentialsError(f"not in a cluster, and no kubeconfig at {', '.join(paths)}: "
                               "set KUBECONFIG")
    return paths


async def _kubeconfig(config: Configuration, context: str | None) -> Login:
    paths = _paths()
    merger = KubeConfigMerger(os.pathsep.join(paths))
    # kubectl takes the first file's current-context; the library the last one's.
    name = context or next((doc.get("current-context") for doc in merger.config_files.values()
                            if doc and doc.get("current-context")), None)
    if not name:
        raise CredentialsError(f"no current-context in {', '.join(paths)} and not in a "
                               "cluster: set KUBECONFIG or TETHER_OPERATOR_CONTEXT")
    if merger.config is None:
        raise CredentialsError(f"no kubeconfig could be read from {', '.join(paths)}")
    loader = _Loader(merger.config, active_context=name, config_base_path=None)
    ctx: dict[str, Any] = (loader.current_context or {}).get("context") or {}
    user = _user(merger, ctx.get("user"))
    await loader.load_and_set(config)
    if user and not (config.api_key.get("BearerToken") or config.cert_file):
        raise CredentialsError(f"user {ctx.get('user')!r} of context {name!r} gave no "
                               "credentials (see the log for the plugin's error)")
    expiration = _now() + (TOKEN_REREAD if {"tokenFile", "auth-provider"} & user.keys()
                           else STATIC_REREAD)
    stamp: datetime | None = getattr(loader, "exec_plugin_expiry", None)
    if "exec" in user and stamp is not None:
        expiration = min(expiration, stamp.replace(tzinfo=stamp.tzinfo or UTC) - EXEC_MARGIN)
    return _finish(config, expiration, ctx.get("namespace"))


# An OIDC user's refreshed tokens, by the refresh token in the kubeconfig: every login after
# the first refresh starts from the newest pair (issuers may accept a refresh token only once);
# kubectl writes them back into the kubeconfig, which the operator may only read.
_REFRESHED: dict[str, tuple[str, str]] = {}


class _Requestor(OpenIDRequestor):
    """The library's token refresh, with the issuer's certificate verified: its own session
    turns verification off when the kubeconfig has no ``idp-certificate-authority``, breaks
    when it has one (kubernetes_asyncio 36.1 passes a file name as aiohttp's SSL context) and
    uses aiohttp's deprecated ``BasicAuth``."""

    def _client_session(self) -> aiohttp.ClientSession:
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        return aiohttp.ClientSession(
            headers={**self._default_headers, "Authorization": f"Basic {basic}"},
            connector=aiohttp.TCPConnector(
                ssl=ssl.create_default_context(cadata=self._ssl_ca_cert)),
            raise_for_status=True, trust_env=True)


class _Loader(KubeConfigLoader):
    """The library's loader, with a working OIDC refresh (``_Requestor``) that is remembered."""

    async def _load_oid_token(self) -> str:
        config = self._user["auth-provider"]["config"] if self._user else None
        if isinstance(config, ConfigNode) and config.safe_get("refresh-token") in _REFRESHED:
            config.value["id-token"], config.value["refresh-token"] = _REFRESHED[
                str(config["refresh-token"])]
        return await super()._load_oid_token()

    async def _refresh_oidc(self, provider: Any) -> None:
        config = provider["config"]
        if "refresh-token" not in config:
            raise ConfigException("oidc: the id-token has expired and there is no "
                                  "refresh-token: log in again (kubectl oidc-login, kubelogin)")
        ca: str | None = None
        if config.safe_get("idp-certificate-authority-data"):
            ca = base64.b64decode(config["idp-certificate-authority-data"]).decode()
        elif config.safe_get("idp-certificate-authority"):
            ca = Path(config["idp-certificate-authority"]).read_text()
        first = next((k for k, v in _REFRESHED.items() if v[1] == config["refresh-token"]),
                     config["refresh-token"])
        fresh = await _Requestor(config["client-id"], config.safe_get("client-secret") or "",
                                 config["idp-issuer-url"], ca).refresh_token(
            config["refresh-token"])
        tokens = fresh["id_token"], fresh.get("refresh_token") or config["refresh-token"]
        config.value["id-token"], config.value["refresh-token"] = _REFRESHED[first] = tokens


def _user(merger: KubeConfigMerger, name: str | None) -> dict[str, Any]:
    """The context's user section, checked for the forms we cannot honour."""
    if not name:
        return {}
    assert merger.config is not None  # checked by the caller
    users = merger.config["users"]
    node = users.get_with_name(name, safe=True) if isinstance(users, ConfigNode) else None
    if node is None:
        raise CredentialsError(f"user {name!r} is not defined in the kubeconfig")
    user: dict[str, Any] = dict(node["user"].value or {}) if "user" in node else {}
    provider = (user.get("auth-provider") or {}).get("name")
    if provider is not None and provider != "oidc":
        raise CredentialsError(
            f"user {name!r} uses the {provider!r} auth-provider, which kubectl removed in 1.26: "
            "use its exec credential plugin instead (e.g. gke-gcloud-auth-plugin, kubelogin)")
    acting = _IMPERSONATION & user.keys()
    if acting:
        raise CredentialsError(f"user {name!r} impersonates ({', '.join(sorted(acting))}), "
                               "which the operator does not do: give it its own credentials")
    if user and not _USER_FIELDS & user.keys():
        raise CredentialsError(f"user {name!r} has none of the credentials the operator "
                               f"reads ({', '.join(sorted(_USER_FIELDS))}): fields "
                               f"{', '.join(sorted(user))}")
    return user


def _finish(config: Configuration, expiration: datetime, namespace: str | None) -> Login:
    auth = (config.api_key.get("BearerToken") or "").strip()  # files may end in a newline
    return Login(config, expiration, namespace, {"Authorization": auth} if auth else {})


class _NamedContext(ssl.SSLContext):
    """Checks the server's certificate against ``tls-server-name`` (and sends it as SNI)
    instead of the host in the URL. kopf's session takes an SSL context but no server name;
    asyncio (and uvloop) wrap every TLS connection, direct or through a CONNECT proxy, with
    ``wrap_bio``: the one place both reach."""

    server_name: str

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


@dataclass(frozen=True, kw_only=True)
class _NamedConnection(kopf.ConnectionInfo):
    """kopf's connection info plus ``tls-server-name``, which kopf has no field for."""

    tls_server_name: str

    def as_ssl_context(self) -> ssl.SSLContext:
        named = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its name
        named.server_name = self.tls_server_name
        if self.ca_path:  # our logins give the CA as a file (the library writes data out)
            named.load_verify_locations(cafile=self.ca_path)
        else:
            named.load_default_certs()
        if self.certificate_path and self.private_key_path:
            named.load_cert_chain(self.certificate_path, self.private_key_path)
        if self.insecure:
            named.check_hostname, named.verify_mode = False, ssl.CERT_NONE
        return named


def connection_info(done: Login) -> kopf.ConnectionInfo:
    """The same login as kopf wants it."""
    c = done.config
    auth = done.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    fields: dict[str, Any] = dict(
        server=c.host, ca_path=c.ssl_ca_cert, insecure=not c.verify_ssl,
        scheme=scheme or None, token=token or None, certificate_path=c.cert_file or None,
        private_key_path=c.key_file or None, proxy_url=c.proxy or None,
        trust_env=True,  # HTTPS_PROXY/NO_PROXY without a proxy-url, as kubectl and kube.py
        default_namespace=done.default_namespace, expiration=done.expiration)
    if c.tls_server_name:
        return _NamedConnection(tls_server_name=c.tls_server_name, **fields)
    return kopf.ConnectionInfo(**fields)


def load(context: str | None = None) -> kopf.ConnectionInfo:
    """``login`` for kopf's login handler, which runs it in a thread (plugins block)."""
    return connection_info(asyncio.run(login(context)))
