"""Every Prometheus metric the sidecar exports, in one place.

Names are a contract (docs/architecture.md, Metrics).

Metrics live in a registry owned by the :class:`SidecarMetrics` instance, created at start-up, not
at import. Label values are bounded: task, model and tool names come from the AgentTask, outcomes
and classes from fixed sets; never prompt text or call ids.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["SidecarMetrics"]

_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
_CHECKPOINT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


class SidecarMetrics:
    def __init__(self, namespace: str, task: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.base = {"namespace": namespace, "task": task}
        r = self.registry
        self.tokens = Counter("tether_llm_tokens", "Tokens billed by the model provider.",
                              ["namespace", "task", "model", "type"], registry=r)
        self.cost = Counter("tether_cost_usd", "Settled spend on model calls, USD.",
                            ["namespace", "task", "model"], registry=r)
        self.tool_calls = Counter(
            "tether_tool_calls", "Tool calls by final outcome (ok, retried_ok, "
            "retryable_exhausted, non_retryable, verification_failed, budget_exceeded).",
            ["namespace", "task", "tool", "outcome"], registry=r)
        self.model_calls = Counter(
            "tether_llm_calls", "Model calls by final outcome.",
            ["namespace", "task", "model", "outcome"], registry=r)
        self.retries = Counter(
            "tether_retries", "Retried attempts; kind is model or tool, class the failure.",
            ["namespace", "task", "kind", "class"], registry=r)
        self.limit_hits = Counter(
            "tether_budget_limit_hits", "Cost envelope limits reached (soft: warned; hard: "
            "call refused, the task stops; contended: refused for now as retryable, other "
            "calls' holds in the way).", ["namespace", "task", "limit"], registry=r)
        self.compactions = Counter(
            "tether_context_compactions", "Prompts compacted to fit the context budget.",
            ["namespace", "task", "strategy"], registry=r)
        self.checkpoint_seconds = Histogram(
            "tether_checkpoint_seconds", "Time to write a checkpoint durably.",
            ["namespace", "task"], buckets=_CHECKPOINT_BUCKETS, registry=r)
        self.checkpoint_corrupt = Counter(
            "tether_checkpoint_corrupt", "Checkpoint generations found damaged and skipped.",
            ["namespace", "task"], registry=r)
        self.replays = Counter(
            "tether_journal_replays", "Calls answered from the journal after a restart (not "
            "sent, not charged).", ["namespace", "task", "kind"], registry=r)
        self.config_reload_failures = Counter(
            "tether_sidecar_config_reload_failures", "Versions of the task file that could not "
            "be applied (unreadable, invalid, another task); the old spec stays enforced.",
            ["namespace", "task"], registry=r)
        # The evaluation record's delivery (eval_outbox.py); tether_eval_* is the evaluator's.
        self.eval_records_sent = Counter(
            "tether_sidecar_eval_records_sent", "Evaluation records settled with the evaluator "
            "(delivered: acknowledged; rejected: refused for good, kept on the volume).",
            ["namespace", "task", "outcome"], registry=r)
        self.eval_delivery_retries = Counter(
            "tether_sidecar_eval_delivery_retries", "Deliveries of an evaluation record that "
            "failed and will be tried again (evaluator down, 408, 429, 5xx).",
            ["namespace", "task"], registry=r)
        self.eval_redaction_failures = Counter(
            "tether_sidecar_eval_redaction_failures", "Evaluation records whose redaction "
            "failed: sent without answer, instructions or inputs.", ["namespace", "task"],
            registry=r)
        self.overhead = Histogram(
            "tether_call_overhead_seconds", "Time a call spent in the sidecar itself "
            "(excluding the upstream's time).", ["namespace", "task", "kind"],
            buckets=_OVERHEAD_BUCKETS, registry=r)
        ns, t = namespace, task
        self.overhead_model = self.overhead.labels(ns, t, "model")
        self.overhead_tool = self.overhead.labels(ns, t, "tool")
        self._children: dict[tuple[Any, ...], Any] = {}
        self._llm: dict[tuple[str, str], list[Any]] = {}

    def _child(self, metric: Counter, *labels: str) -> Any:
        """The labelled child, looked up once (``labels()`` costs a few µs a call)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.base["namespace"],
                                                        self.base["task"], *labels)
        return child

    def llm(self, model: str, outcome: str, input_tokens: int = 0, output_tokens: int = 0,
            cost: float = 0.0) -> None:
        # Every model call lands here: one lookup for its children, not four. A series is
        # still created only when first counted (no zero-valued token series for a replay).
        kids = self._llm.get((model, outcome))
        if kids is None:
            kids = self._llm[(model, outcome)] = [
                self._child(self.model_calls, model, outcome), None, None, None]
        kids[0].inc()
        if input_tokens:
            (kids[1] or self._llm_kid(kids, 1, self.tokens, model, "input")).inc(input_tokens)
        if output_tokens:
            (kids[2] or self._llm_kid(kids, 2, self.tokens, model, "output")).inc(output_tokens)
        if cost:
            (kids[3] or self._llm_kid(kids, 3, self.cost, model)).inc(cost)

    def _llm_kid(self, kids: list[Any], i: int, metric: Counter, *labels: str) -> Any:
        kids[i] = self._child(metric, *labels)
        return kids[i]

    def tool(self, tool: str, outcome: str) -> None:
        self._child(self.tool_calls, tool, outcome).inc()

    def retry(self, kind: str, cls: str) -> None:
        self._child(self.retries, kind, cls).inc()

    def limit_hit(self, limit: str) -> None:
        self._child(self.limit_hits, limit).inc()

    def compaction(self, strategy: str) -> None:
        self._child(self.compactions, strategy).inc()
