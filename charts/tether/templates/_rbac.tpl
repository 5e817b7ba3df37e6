{{/* What the operator does in a namespace it watches; docs/chart.md explains each verb. */}}
{{- define "tether.workloadRules" -}}
# kopf lists and watches tasks; the reconciler reads one at a time and patches
# metadata.finalizers (tether.dev/budget-release) of a task that holds budget.
- apiGroups: [tether.dev]
  resources: [agenttasks]
  verbs: [get, list, watch, patch]
- apiGroups: [tether.dev]
  resources: [agenttasks/status]
  verbs: [patch]
# The pod, ConfigMap, ServiceAccount and PVC of a task are owned by it with
# blockOwnerDeletion: the OwnerReferencesPermissionEnforcement admission plugin, where
# enabled, asks for this.
- apiGroups: [tether.dev]
  resources: [agenttasks/finalizers]
  verbs: [update]
# Budgets are read (admission) and only their status is written, whole, with resourceVersion.
- apiGroups: [tether.dev]
  resources: [agentbudgets]
  verbs: [get, list, watch]
- apiGroups: [tether.dev]
  resources: [agentbudgets/status]
  verbs: [update]
# EvaluationPolicies are listed when a task's pod is made (its sidecar's TETHER_EVALUATION) and
# watched to know which namespaces have any; never written (the evaluator owns their status).
- apiGroups: [tether.dev]
  resources: [evaluationpolicies]
  verbs: [list, watch]
# One pod per attempt: listed by label, watched, created, deleted (budget stop, cleanup);
# patched (and read again on a conflict) to remove the tether.dev/attempt-figures finalizer
# once the attempt's final figures are in the task's status.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]
# The task's ConfigMap (its task file) is read and replaced when the accepted spec changes,
# so the sidecar applies live edits; its owner is read before a pod is made (never adopted).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update]
# Created once per task ("exists" is fine); a PVC's owner is read (metadata only) before a pod
# is made; owner references garbage-collect them with the task.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, create]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create]
# A Secret a task names is read as metadata only (Accept: PartialObjectMetadata), to check
# its opt-in label tether.dev/model-credentials before the operator mounts it into a pod.
# RBAC cannot grant "metadata only": this get would allow reading values, which the operator
# never asks for. No list or watch: one named Secret at a time.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on AgentTasks, from the operator and from kopf; a pending pod's warnings are listed
# (a Secret volume that cannot mount is told only there, as FailedMount).
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- end }}
