"""tether_eval: continuous evaluation of finished AgentTasks.

The evaluator Deployment receives each finished task's record from its sidecar (deterministic checks
done, redacted before it left the task), judges a reproducible sample with a pinned judge through
the harness's own upstream, ledger and retry code, stores records and verdicts (SQLite on a volume,
or PostgreSQL), and runs a sequential change detector per evaluation policy.
"""
