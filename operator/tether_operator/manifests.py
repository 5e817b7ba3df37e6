"""Pure functions: an AgentTask (as the API server returns it) → the objects that run it.

Every pod meets the Pod Security Standards ``restricted`` profile: non-root, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp, no service-account token; both
containers have a read-only root filesystem with an emptyDir of their own at /tmp. Only the
sidecar mounts the model credentials (and the CA bundle); the agent reaches the world through it
on 127.0.0.1.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import yaml
from pydantic import ValidationError

from tether_api import ModelSpec
from tether_sidecar.pricing import resolve as resolve_price

from .settings import OperatorSettings

__all__ = ["LABEL_ATTEMPT", "LABEL_TASK", "config_map", "object_names", "owner_ref",
           "pod", "pvc", "service_account"]

LABEL_TASK = "tether.dev/task"
LABEL_ATTEMPT = "tether.dev/attempt"
SIDECAR = "tether-sidecar"
AGENT = "agent"
STATE_DIR = "/var/lib/tether"
CONFIG_DIR = "/etc/tether/task"
SECRETS_DIR = "/etc/tether/secrets"
CA_DIR = "/etc/tether/ca"
CA_FILE = "ca.crt"
TMP_DIR = "/tmp"
SIDECAR_TMP_LIMIT = "64Mi"
AGENT_PORT = 8181

Body = dict[str, Any]


def _name(base: str, suffix: str) -> str:
    """A DNS label ≤ 63 characters: long task names are cut and made unique by a hash."""
    full = f"{base}-{suffix}" if suffix else base
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{base[:63 - len(suffix) - 10]}-{digest}-{suffix}".strip("-")


def object_names(task: Body, attempt: int) -> dict[str, str]:
    name = task["metadata"]["name"]
    return {"sa": _name(name, "agent"), "cm": _name(name, "task"), "pvc": _name(name, "state"),
            "pod": _name(name, f"a{attempt}")}


def owner_ref(task: Body) -> dict[str, Any]:
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "name": task["metadata"]["name"], "uid": task["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _meta(task: Body, name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": task["metadata"]["namespace"],
            "labels": {LABEL_TASK: task["metadata"]["name"], "app.kubernetes.io/managed-by":
                       "tether", **labels},
            "ownerReferences": [owner_ref(task)]}


def service_account(task: Body) -> Body:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta(task, object_names(task, 0)["sa"]),
            "automountServiceAccountToken": False}


def config_map(task: Body) -> Body:
    """The task as the sidecar reads it: the same AgentTask, with the UID that names its trace."""
    meta = task["metadata"]
    # The generation lets the sidecar say which spec it enforces (status.observedGeneration).
    doc = {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
           "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                        "uid": meta["uid"], "generation": meta.get("generation", 1),
                        "labels": meta.get("labels") or {}},
           "spec": task["spec"]}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(task, object_names(task, 0)["cm"]),
            "data": {"agenttask.yaml": yaml.safe_dump(doc, sort_keys=True)}}


def pvc(task: Body) -> Body:
    ckpt = task["spec"].get("checkpoint") or {}
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": ckpt.get("size", "1Gi")}}}
    if ckpt.get("storageClassName"):
        spec["storageClassName"] = ckpt["storageClassName"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(task, object_names(task, 0)["pvc"]), "spec": spec}


def _restricted(uid: int) -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _prior(task: Body) -> list[str]:
    """What earlier attempts spent, as the status holds it now: the sidecar's ledger starts
    there, so the hard limit holds across attempts (issue #9, contract 1)."""
    status = task.get("status") or {}
    return ["--prior-spent-usd", str(status.get("spentUSD") or "0"),
            "--prior-input-tokens", str(int(status.get("inputTokens") or 0)),
            "--prior-output-tokens", str(int(status.get("outputTokens") or 0))]


def _price(task: Body) -> list[str]:
    """The model's genai-prices price, resolved here once per pod so the sidecar's start-up
    need not load genai-prices' table (tether_sidecar/pricing.py). None to pass for a declared
    price, an unknown model or an invalid model spec: the sidecar resolves and reports those."""
    try:
        model = ModelSpec.model_validate(task["spec"]["model"])
    except ValidationError:  # the sidecar names the problem in its start-up error
        return []
    resolved = resolve_price(model)
    return [] if resolved is None else ["--model-price", resolved]


def _proxy_env(settings: OperatorSettings) -> list[dict[str, str]]:
    pairs = (("HTTP_PROXY", settings.sidecar_http_proxy),
             ("HTTPS_PROXY", settings.sidecar_https_proxy),
             ("NO_PROXY", settings.sidecar_no_proxy))
    return [{"name": k, "value": v} for k, v in pairs if v]


def _ca_volume(spec: Body) -> dict[str, Any] | None:
    """The caBundle's key as file ``ca.crt`` of a volume, from a ConfigMap or a Secret."""
    bundle = spec["model"].get("caBundle") or {}
    if ref := bundle.get("configMapKeyRef"):
        return {"name": "ca-bundle", "configMap": {
            "name": ref["name"], "items": [{"key": ref["key"], "path": CA_FILE}]}}
    if ref := bundle.get("secretKeyRef"):
        return {"name": "ca-bundle", "secret": {
            "secretName": ref["name"], "items": [{"key": ref["key"], "path": CA_FILE}]}}
    return None


def agent_env(task: Body, attempt: int) -> list[dict[str, Any]]:
    """What the agent sees; ``tether run`` sets the same variables locally."""
    spec, meta = task["spec"], task["metadata"]
    url = f"http://127.0.0.1:{AGENT_PORT}"
    base = {
        "OPENAI_BASE_URL": f"{url}/v1", "ANTHROPIC_BASE_URL": url, "TETHER_URL": url,
        "OPENAI_API_KEY": "tether-sidecar-holds-the-key",
        "ANTHROPIC_API_KEY": "tether-sidecar-holds-the-key",
        "TETHER_TASK_NAME": meta["name"], "TETHER_TASK_NAMESPACE": meta["namespace"],
        "TETHER_TASK_INSTRUCTIONS": spec["task"]["instructions"],
        # JSON, as the SDK (tether_agent.task) and `tether run` read it.
        "TETHER_TASK_INPUTS": json.dumps(spec["task"].get("inputs") or {}),
        "TETHER_MODEL": spec["model"]["name"],
        # HTTP tools (POST /tools/{name}) and MCP servers (/mcp/{name}) apart: an agent must
        # not offer a server to its model as a tool of that name.
        "TETHER_TOOLS": ",".join(t["name"] for t in spec.get("tools") or [] if not t.get("mcp")),
        "TETHER_MCP_SERVERS": ",".join(t["name"] for t in spec.get("tools") or []
                                       if t.get("mcp")),
        "TETHER_ATTEMPT": str(attempt),
    }
    user = [{"name": e["name"], "value": e.get("value", "")}
            for e in spec["agent"].get("env") or []]
    return [{"name": k, "value": v} for k, v in base.items()] + user


def _agent_container_env(task: Body, attempt: int) -> list[dict[str, Any]]:
    """agent_env plus a writable HOME and TMPDIR (the root filesystem is read-only; many tools
    write under HOME), before the user's own variables so that those can override them."""
    env = agent_env(task, attempt)
    own = len(task["spec"]["agent"].get("env") or [])
    writable = [{"name": "HOME", "value": TMP_DIR}, {"name": "TMPDIR", "value": TMP_DIR}]
    return env[:len(env) - own] + writable + env[len(env) - own:]


def _volumes(task: Body, names: dict[str, str]) -> tuple[list[Body], list[Body]]:
    """The pod's volumes, and the sidecar's mounts of them."""
    spec = task["spec"]
    secret_ref = spec["model"].get("credentialsSecretRef") or {}
    volumes: list[Body] = [
        {"name": "task", "configMap": {"name": names["cm"]}},
        {"name": "state", **({"persistentVolumeClaim": {"claimName": names["pvc"]}}
                             if (spec.get("checkpoint") or {}).get("enabled", True)
                             else {"emptyDir": {}})},
        {"name": "sidecar-tmp", "emptyDir": {"sizeLimit": SIDECAR_TMP_LIMIT}},
        {"name": "agent-tmp", "emptyDir": {}},
    ]
    mounts: list[Body] = [{"name": "task", "mountPath": CONFIG_DIR, "readOnly": True},
                          {"name": "state", "mountPath": STATE_DIR},
                          {"name": "sidecar-tmp", "mountPath": TMP_DIR}]
    if secret_ref:
        volumes.append({"name": "model-credentials", "secret": {
            "secretName": secret_ref["name"], "items": [{"key": secret_ref["key"],
                                                         "path": secret_ref["key"]}]}})
        mounts.append({"name": "model-credentials", "readOnly": True,
                       "mountPath": f"{SECRETS_DIR}/{secret_ref['name']}"})
    if (ca := _ca_volume(spec)) is not None:
        volumes.append(ca)
        mounts.append({"name": "ca-bundle", "mountPath": CA_DIR, "readOnly": True})
    return volumes, mounts


def _sidecar(task: Body, attempt: int, settings: OperatorSettings, mounts: list[Body],
             evaluation: str | None) -> Body:
    command = ["tether-sidecar", "--task", f"{CONFIG_DIR}/agenttask.yaml",
               "--state-dir", STATE_DIR, "--secrets-dir", SECRETS_DIR,
               "--port", str(AGENT_PORT), "--ops-port", str(settings.sidecar_ops_port),
               "--attempt", str(attempt),
               "--grace-seconds", str(settings.sidecar_grace_seconds), *_prior(task),
               *_price(task)]
    if task["spec"]["model"].get("caBundle"):
        command += ["--ca-bundle", f"{CA_DIR}/{CA_FILE}"]
    sidecar: Body = {
        "name": SIDECAR, "image": settings.sidecar_image,
        "imagePullPolicy": settings.image_pull_policy,
        "restartPolicy": "Always",  # a native sidecar: starts first, stops after the agent
        "command": command,
        "ports": [{"name": "ops", "containerPort": settings.sidecar_ops_port}],
        "startupProbe": {"httpGet": {"path": "/readyz", "port": "ops"},
                         "periodSeconds": 1, "failureThreshold": 60},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "ops"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": settings.sidecar_cpu,
                                   "memory": settings.sidecar_memory},
                      "limits": {"memory": settings.sidecar_memory_limit
                                 if evaluation is None
                                 else settings.sidecar_memory_limit_evaluated}},
        "volumeMounts": mounts,
        "terminationMessagePolicy": "File",
        "securityContext": _restricted(settings.run_as_user),
    }
    env = _proxy_env(settings)
    if evaluation is not None:  # the EvaluationPolicies selecting the task (evaluation.py)
        env.append({"name": "TETHER_EVALUATION", "value": evaluation})
    if env:
        sidecar["env"] = env
    return sidecar


def _agent(task: Body, attempt: int, settings: OperatorSettings) -> Body:
    agent = task["spec"]["agent"]
    container: Body = {
        "name": AGENT, "image": agent["image"], "env": _agent_container_env(task, attempt),
        "resources": agent.get("resources") or {},
        "volumeMounts": [{"name": "agent-tmp", "mountPath": TMP_DIR}],
        "securityContext": _restricted(settings.run_as_user),
    }
    for field in ("imagePullPolicy", "command", "args"):
        if agent.get(field):
            container[field] = copy.deepcopy(agent[field])
    return container


def pod(task: Body, attempt: int, settings: OperatorSettings,
        deadline_seconds: int | None, evaluation: str | None = None) -> Body:
    names = object_names(task, attempt)
    uid = settings.run_as_user
    volumes, sidecar_mounts = _volumes(task, names)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": names["sa"], "automountServiceAccountToken": False,
        "restartPolicy": "Never",  # attempts are the operator's, with their own accounting
        # A Service named e.g. "tether-sidecar" in the task's namespace would otherwise inject
        # TETHER_SIDECAR_SERVICE_HOST & co., which the sidecar refuses as unknown settings.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.grace_seconds,
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "fsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [_sidecar(task, attempt, settings, sidecar_mounts, evaluation)],
        "containers": [_agent(task, attempt, settings)], "volumes": volumes,
    }
    if deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = max(1, deadline_seconds)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": _meta(task, names["pod"], **{LABEL_ATTEMPT: str(attempt)}),
            "spec": pod_spec}
