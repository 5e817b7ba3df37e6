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
# One pod per attempt: listed by label, watched, created, deleted (budget stop, cleanup).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, delete]
# Created once per task ("exists" is fine); never read, changed or deleted: owner references
# garbage-collect them with the task.
- apiGroups: [""]
  resources: [configmaps, serviceaccounts, persistentvolumeclaims]
  verbs: [create]
# Events on AgentTasks, from the operator and from kopf; a pending pod's warnings are listed
# (a Secret volume that cannot mount is told only there, as FailedMount).
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- end }}
