"""The tether operator (kopf): runs each AgentTask as a pod with the harness sidecar.

Layers, each importing only those below it:

    handlers   kopf registrations: events and timers call ``reconcile``
    reconcile  read the cluster, ask ``decide``, apply the plan (the only writer)
    kube       the one module that talks to the API server
    decide     pure: observed state → plan (phase, attempt, pods to create or delete)
    budgets    pure: AgentBudget admission and period arithmetic
    manifests  pure: AgentTask → ServiceAccount, ConfigMap, PVC, Pod
    settings   typed settings (TETHER_OPERATOR_* environment variables)

Import name ``tether_operator``: the folder is ``operator/`` but ``operator`` is the stdlib's.
It does not proxy model calls or hold credentials (the sidecar does), and it never writes an
AgentTask's or AgentBudget's spec (GitOps owns those), only their status.
"""
