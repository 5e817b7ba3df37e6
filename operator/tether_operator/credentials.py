"""Where the API server is and how to log in to it: in-cluster service account or kubeconfig.

One loader for both API clients in the process (kopf's watches and ours, kube.py), so neither
needs the ``kubernetes`` package (which costs ~18 MB of imports and kopf imports it whenever it
is installed). Returns a ``kopf.ConnectionInfo`` with an ``expiration``: kopf logs in again
when it passes, and so does ``Kube``.

Supported, as kubectl reads them: ``$KUBECONFIG`` (a list of files, first occurrence wins) or
``~/.kube/config``; its current context or the one named (the ``context`` setting); server,
CA file or data, insecure-skip-tls-verify; user token, tokenFile, client certificate and key
(file or data), username and password, and ``exec`` credential plugins (EKS, GKE, AKS...) with
their expiry.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
import yaml

__all__ = ["CredentialsError", "load"]

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Bound service-account tokens are rotated by the kubelet in the file; re-read it this often.
TOKEN_REREAD = timedelta(minutes=1)
# Static credentials (certificates, a fixed token) are still re-read now and then: cheap.
STATIC_REREAD = timedelta(minutes=10)


class CredentialsError(Exception):
    """No usable credentials: the message says which file or field is missing."""


def _now() -> datetime:
    return datetime.now(UTC)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def load(context: str | None = None) -> kopf.ConnectionInfo:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
        "KUBERNETES_SERVICE_PORT", "443")
    if host and (SA_DIR / "token").exists() and not os.environ.get("KUBECONFIG"):
        return _in_cluster(host, port)
    return _kubeconfig(context)


def _in_cluster(host: str, port: str) -> kopf.ConnectionInfo:
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    namespace = SA_DIR / "namespace"
    return kopf.ConnectionInfo(
        server=server, ca_path=str(SA_DIR / "ca.crt"), scheme="Bearer",
        token=_read(SA_DIR / "token", "service-account token"),
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
        expiration=_now() + TOKEN_REREAD)


def _merged(paths: list[Path]) -> dict[str, Any]:
    """kubectl's merge of a KUBECONFIG list: the first file to define a name wins."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {},
                              "current-context": None}
    for path in paths:
        if not path.exists():
            continue
        try:
            doc = yaml.safe_load(_read(path, "kubeconfig")) or {}
        except yaml.YAMLError as exc:
            raise CredentialsError(f"kubeconfig {path} is not valid YAML: {exc}") from exc
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
        for kind, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for item in doc.get(kind) or []:
                # Relative paths in a kubeconfig are relative to the file that holds them.
                merged[kind].setdefault(item["name"], (item.get(key) or {}, path.parent))
    return merged


def _kubeconfig(context: str | None) -> kopf.ConnectionInfo:
    env = os.environ.get("KUBECONFIG")
    paths = [Path(p) for p in env.split(os.pathsep) if p] if env else [
        Path.home() / ".kube" / "config"]
    if not any(p.exists() for p in paths):
        raise CredentialsError(f"not in a cluster, and no kubeconfig at "
                               f"{', '.join(map(str, paths))}: set KUBECONFIG")
    conf = _merged(paths)
    name = context or conf["current-context"]
    if not name:
        raise CredentialsError(f"no current-context in {', '.join(map(str, paths))} and not in "
                               "a cluster: set KUBECONFIG or TETHER_OPERATOR_CONTEXT")
    if name not in conf["contexts"]:
        raise CredentialsError(f"context {name!r} not found in {', '.join(map(str, paths))}")
    ctx, _ = conf["contexts"][name]
    try:
        cluster, cdir = conf["clusters"][ctx["cluster"]]
        user, udir = conf["users"][ctx["user"]] if ctx.get("user") else ({}, Path())
    except KeyError as exc:
        raise CredentialsError(f"context {name!r} names {exc} which is not defined") from exc
    if not cluster.get("server"):
        raise CredentialsError(f"cluster {ctx['cluster']!r} has no server")

    def path(value: str | None, base: Path) -> str | None:
        return str(base / value) if value else None

    creds: dict[str, Any] = {
        "token": user.get("token"), "username": user.get("username"),
        "password": user.get("password"),
        "certificate_path": path(user.get("client-certificate"), udir),
        "certificate_data": user.get("client-certificate-data"),
        "private_key_path": path(user.get("client-key"), udir),
        "private_key_data": user.get("client-key-data")}
    expiration = _now() + STATIC_REREAD
    if user.get("tokenFile"):
        creds["token"] = _read(udir / user["tokenFile"], "tokenFile")
        expiration = _now() + TOKEN_REREAD
    if user.get("exec"):
        creds, expiration = _exec(user["exec"], cluster)
    return kopf.ConnectionInfo(
        server=cluster["server"], ca_path=path(cluster.get("certificate-authority"), cdir),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        scheme="Bearer" if creds.get("token") else None,
        default_namespace=ctx.get("namespace"), expiration=expiration, **creds)


def _exec(spec: dict[str, Any], cluster: dict[str, Any]) -> tuple[dict[str, Any], datetime]:
    """Run a client-go credential plugin and read its ExecCredential."""
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    request: dict[str, Any] = {"apiVersion": spec.get(
        "apiVersion", "client.authentication.k8s.io/v1"), "kind": "ExecCredential",
        "spec": {"interactive": False}}
    if spec.get("provideClusterInfo"):
        request["spec"]["cluster"] = {"server": cluster["server"]}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(request)
    command = [spec["command"], *(spec.get("args") or [])]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialsError(f"credential plugin {command[0]!r} failed to run: {exc}") from exc
    if done.returncode != 0:
        raise CredentialsError(f"credential plugin {command[0]!r} exited {done.returncode}: "
                               f"{done.stderr.strip()[:500]}")
    try:
        status = json.loads(done.stdout)["status"]
    except (ValueError, KeyError) as exc:
        raise CredentialsError(f"credential plugin {command[0]!r} printed no ExecCredential "
                               f"status: {exc}") from exc
    expiration = _now() + STATIC_REREAD
    if status.get("expirationTimestamp"):
        stamp = datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
        expiration = min(expiration, stamp - timedelta(seconds=30))
    return {"token": status.get("token"),
            "certificate_data": status.get("clientCertificateData"),
            "private_key_data": status.get("clientKeyData")}, expiration
