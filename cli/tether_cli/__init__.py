"""``tether``: run an AgentTask on this machine under the same harness, and read its trace.

``tether run`` starts the sidecar and the agent as local processes (the state dir stands in for
the PVC); ``tether trace`` renders the span file a run left. It does not talk to Kubernetes.
"""
