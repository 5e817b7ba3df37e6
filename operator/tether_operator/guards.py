"""Why a task's pod must not be created yet (issue #9, contract 6).

The reconciler checks ``credentials(kube, task)`` (``(reason, message)`` or None) before anything
is made, then ``claim``s the ConfigMap and PVC (created, then checked only when one of that name
already existed: the usual start reads nothing):

* ``CredentialsNotFound``: a Secret the task names (``spec.model.credentialsSecretRef``, or a
  ``caBundle.secretKeyRef``) does not exist. The task fails: the user creates the Secret and
  re-creates the task.
* ``CredentialsNotAllowed``: that Secret lacks the opt-in label
  ``tether.dev/model-credentials: "true"``. The operator mounts Secrets into pods on a task
  author's word; without the opt-in, anyone who may create an AgentTask could have the
  operator mount any Secret of the namespace into a pod that sends it to a URL of their
  choosing (a confused deputy). The task fails.
* ``StaleObjects``: the task's ConfigMap or PVC exists but is not owned by this task's UID (a
  deleted task of the same name still being garbage collected, or an object made by hand).
  The caller waits; these objects are never adopted, since an old journal on an old PVC would
  be replayed as this task's.

Every read asks for metadata only (``PartialObjectMetadata``), so a Secret's values never reach
the operator's memory, and a ConfigMap's task file is not downloaded just to read its owner.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .kube import ApiError, Kube

__all__ = ["CREDENTIALS_LABEL", "PARTIAL_METADATA", "claim", "credentials"]

Body = dict[str, Any]
CREDENTIALS_LABEL = "tether.dev/model-credentials"
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


async def _metadata(kube: Kube, path: str) -> Body | None:
    """The object's metadata (PartialObjectMetadata), or None when it does not exist; an
    answer that is not metadata alone is refused rather than looked at."""
    try:
        doc: Body = await kube.request("GET", path, accept=PARTIAL_METADATA)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    if doc.get("kind") != "PartialObjectMetadata":
        raise ApiError(0, "NotMetadata", f"GET {path} answered {doc.get('kind')!r}, not "
                       "PartialObjectMetadata: refusing to read it")
    return doc


def _secret_refs(spec: Body) -> list[tuple[str, str]]:
    """(secret name, the field naming it) for every Secret the task's pod would mount."""
    model = spec.get("model") or {}
    refs = []
    if (cred := model.get("credentialsSecretRef")) and cred.get("name"):
        refs.append((cred["name"], "spec.model.credentialsSecretRef"))
    if (ca := (model.get("caBundle") or {}).get("secretKeyRef")) and ca.get("name"):
        refs.append((ca["name"], "spec.model.caBundle.secretKeyRef"))
    return refs


async def _credentials(kube: Kube, ns: str, spec: Body) -> tuple[str, str] | None:
    for name, field in _secret_refs(spec):
        meta = await _metadata(kube, f"/api/v1/namespaces/{ns}/secrets/{quote(name)}")
        if meta is None:
            return ("CredentialsNotFound",
                    f"Secret {name} (named by {field}) does not exist in namespace {ns}: "
                    f"create it with the label {CREDENTIALS_LABEL}=true, then re-create the "
                    "task")
        labels = (meta.get("metadata") or {}).get("labels") or {}
        if labels.get(CREDENTIALS_LABEL) != "true":
            return ("CredentialsNotAllowed",
                    f"Secret {name} (named by {field}) lacks the label "
                    f'{CREDENTIALS_LABEL}: "true" that lets AgentTasks use it: if tasks may, '
                    f"run `kubectl -n {ns} label secret {name} {CREDENTIALS_LABEL}=true`, then "
                    "re-create the task")
    return None


def _not_ours(kind: str, name: str, found: Body, uid: str) -> tuple[str, str] | None:
    """StaleObjects when ``found`` (an object's metadata) is not owned by ``uid``."""
    meta = found.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    if any(o.get("uid") == uid for o in owners):
        return None
    if meta.get("deletionTimestamp"):
        why = "it is being deleted"
    elif owners:
        others = ", ".join(f"{o.get('kind')} {o.get('name')} (uid {o.get('uid')})"
                           for o in owners)
        why = f"it belongs to {others}, an earlier task of this name still being removed"
    else:
        why = "it has no owner (made by hand?): delete it to let this task start"
    return ("StaleObjects", f"{kind} {name} exists and is not this task's: {why}; waiting "
            "(never adopted: an old journal would be replayed as this task's)")


_PLURAL = {"ConfigMap": "configmaps", "PersistentVolumeClaim": "persistentvolumeclaims"}


async def claim(kube: Kube, obj: Body, uid: str) -> tuple[bool, tuple[str, str] | None]:
    """Create ``obj`` (a ConfigMap or PVC owned by the task ``uid``): (whether this call made
    it, StaleObjects when one of that name exists and is not the task's)."""
    if await kube.ensure(obj):
        return True, None
    meta = obj["metadata"]
    found = await _metadata(kube, f"/api/v1/namespaces/{meta['namespace']}/"
                            f"{_PLURAL[obj['kind']]}/{quote(meta['name'])}")
    if found is None:  # deleted since: the next reconcile makes it again
        return False, ("StaleObjects", f"{obj['kind']} {meta['name']} was being deleted; "
                       "waiting")
    return False, _not_ours(obj["kind"], meta["name"], found, uid)


async def credentials(kube: Kube, task: Body) -> tuple[str, str] | None:
    """Whether the Secrets the task names may be mounted (CredentialsNotFound/NotAllowed)."""
    return await _credentials(kube, task["metadata"]["namespace"], task["spec"])
