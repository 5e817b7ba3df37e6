"""Pure functions: an AgentTask (as the API server returns it) → the objects that run it.

Every pod meets the Pod Security Standards ``restricted`` profile: non-root, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp, no service-account token. Only the
sidecar mounts the model credentials; the agent reaches the world through it on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

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
    doc = {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
           "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                        "uid": meta["uid"], "labels": meta.get("labels") or {}},
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
            "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


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
        "TETHER_TOOLS": ",".join(t["name"] for t in spec.get("tools") or []),
        "TETHER_ATTEMPT": str(attempt),
    }
    user = [{"name": e["name"], "value": e.get("value", "")}
            for e in spec["agent"].get("env") or []]
    return [{"name": k, "value": v} for k, v in base.items()] + user


def pod(task: Body, attempt: int, settings: OperatorSettings,
        deadline_seconds: int | None) -> Body:
    spec, names = task["spec"], object_names(task, attempt)
    uid = settings.run_as_user
    secret_ref = (spec["model"].get("credentialsSecretRef") or {})
    volumes: list[dict[str, Any]] = [
        {"name": "task", "configMap": {"name": names["cm"]}},
        {"name": "state", **({"persistentVolumeClaim": {"claimName": names["pvc"]}}
                             if (spec.get("checkpoint") or {}).get("enabled", True)
                             else {"emptyDir": {}})},
    ]
    sidecar_mounts = [{"name": "task", "mountPath": CONFIG_DIR, "readOnly": True},
                      {"name": "state", "mountPath": STATE_DIR}]
    if secret_ref:
        volumes.append({"name": "model-credentials", "secret": {
            "secretName": secret_ref["name"], "items": [{"key": secret_ref["key"],
                                                         "path": secret_ref["key"]}]}})
        sidecar_mounts.append({"name": "model-credentials", "readOnly": True,
                               "mountPath": f"{SECRETS_DIR}/{secret_ref['name']}"})
    sidecar = {
        "name": SIDECAR, "image": settings.sidecar_image,
        "imagePullPolicy": settings.image_pull_policy,
        "restartPolicy": "Always",  # a native sidecar: starts first, stops after the agent
        "command": ["tether-sidecar", "--task", f"{CONFIG_DIR}/agenttask.yaml",
                    "--state-dir", STATE_DIR, "--secrets-dir", SECRETS_DIR,
                    "--port", str(AGENT_PORT), "--ops-port", str(settings.sidecar_ops_port),
                    "--attempt", str(attempt),
                    "--grace-seconds", str(settings.sidecar_grace_seconds)],
        "ports": [{"name": "ops", "containerPort": settings.sidecar_ops_port}],
        "startupProbe": {"httpGet": {"path": "/readyz", "port": "ops"},
                         "periodSeconds": 1, "failureThreshold": 60},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "ops"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": settings.sidecar_cpu,
                                   "memory": settings.sidecar_memory},
                      "limits": {"memory": settings.sidecar_memory_limit}},
        "volumeMounts": sidecar_mounts,
        "terminationMessagePolicy": "File",
        "securityContext": _restricted(uid),
    }
    agent = spec["agent"]
    agent_container: dict[str, Any] = {
        "name": AGENT, "image": agent["image"], "env": agent_env(task, attempt),
        "resources": agent.get("resources") or {},
        "securityContext": _restricted(uid),
    }
    if agent.get("imagePullPolicy"):
        agent_container["imagePullPolicy"] = agent["imagePullPolicy"]
    if agent.get("command"):
        agent_container["command"] = list(agent["command"])
    if agent.get("args"):
        agent_container["args"] = list(agent["args"])
    pod_spec: dict[str, Any] = {
        "serviceAccountName": names["sa"], "automountServiceAccountToken": False,
        "restartPolicy": "Never",  # attempts are the operator's, with their own accounting
        # A Service named e.g. "tether-sidecar" in the task's namespace would otherwise inject
        # TETHER_SIDECAR_SERVICE_HOST & co., which the sidecar refuses as unknown settings.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.grace_seconds,
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "fsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [sidecar], "containers": [agent_container], "volumes": volumes,
    }
    if deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = max(1, deadline_seconds)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": _meta(task, names["pod"], **{LABEL_ATTEMPT: str(attempt)}),
            "spec": pod_spec}
