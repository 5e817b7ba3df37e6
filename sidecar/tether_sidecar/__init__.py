"""The harness sidecar: the only way an agent reaches models, tools and money.

It proxies LLM calls (OpenAI and Anthropic wire formats) and tool calls for one AgentTask, enforces
the cost envelope as a circuit breaker, classifies and retries failures, keeps the prompt inside the
context budget, and records every call as metrics and spans.

It does not talk to the Kubernetes API (the operator does) and imports neither kopf nor the
kubernetes client: it must start fast and stay small in every agent pod.
"""
