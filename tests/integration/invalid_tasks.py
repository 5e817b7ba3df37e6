"""AgentTasks that must be refused, each with the words the refusal must contain.

Shared by tests/integration/test_crds.py (the API server refuses them, with these messages) and
tests/unit/test_crdgen.py (tether_api refuses them too), so the two gates cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spec = dict[str, Any]

BASE_TASK: dict[str, Any] = {
    "apiVersion": "tether.dev/v1alpha1",
    "kind": "AgentTask",
    "metadata": {"name": "bad"},
    "spec": {
        # Never pulled: these tasks are refused before a pod exists (no TETHER_E2E_IMAGE_*).
        "agent": {"image": "tether/agent:latest"},
        "task": {"instructions": "Find the answer."},
        "model": {"provider": "openai", "name": "gpt-4o"},
        "tools": [{"name": "search", "url": "http://tools:8081/search"}],
        "costEnvelope": {"softLimitUSD": "1.00", "hardLimitUSD": "2.00"},
        "retryPolicy": {"calls": {"retryOn": [429, 503, "timeout"]}},
    },
}


@dataclass(frozen=True)
class InvalidTask:
    name: str
    mutate: Callable[[Spec], None]
    expect: tuple[str, ...]  # fragments of the API server's message: field path, then words


def invalid_task(case: InvalidTask) -> dict[str, Any]:
    task = copy.deepcopy(BASE_TASK)
    task["metadata"]["name"] = case.name
    case.mutate(task["spec"])
    return task


def _set(*path: str | int, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        node: Any = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _duplicate_tool(spec: Spec) -> None:
    spec["tools"].append({"name": "search", "url": "http://tools:8081/other"})


def _tool_url_and_mcp(spec: Spec) -> None:
    spec["tools"][0]["mcp"] = {"url": "http://tools:8000/mcp"}


def _tool_without_url_or_mcp(spec: Spec) -> None:
    del spec["tools"][0]["url"]


def _compatible_without_url(spec: Spec) -> None:
    spec["model"] = {"provider": "openai-compatible", "name": "llama-3"}


def _no_hard_limit(spec: Spec) -> None:
    spec["costEnvelope"] = {"onHardLimit": "Stop"}


def _plaintext_url(spec: Spec) -> None:
    spec["model"]["baseURL"] = "http://model.example:8080/v1"


def _ca_bundle(*refs: str) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        spec["model"]["caBundle"] = {ref: {"name": "ca", "key": "ca.crt"} for ref in refs}
    return mutate


INVALID_TASKS = (
    InvalidTask("soft-above-hard", _set("costEnvelope", "softLimitUSD", value="5.00"),
                ("spec.costEnvelope.softLimitUSD",
                 "softLimitUSD must not exceed hardLimitUSD: lower the soft limit or raise the "
                 "hard one")),
    InvalidTask("negative-limit", _set("costEnvelope", "hardLimitUSD", value="-1.00"),
                ("spec.costEnvelope.hardLimitUSD",
                 "must be a non-negative amount in USD, written as a decimal string")),
    InvalidTask("unknown-retry-class",
                _set("retryPolicy", "calls", "retryOn", value=[429, "flaky"]),
                ("spec.retryPolicy.calls.retryOn[1]",
                 "unknown retry class: use an HTTP status (100-599) or one of connection, empty, "
                 "fields, malformed, rpc_error, schema, timeout, tool_error")),
    InvalidTask("bad-duration",
                _set("retryPolicy", "calls", "initialInterval", value="5 seconds"),
                ("spec.retryPolicy.calls.initialInterval",
                 "must be a duration: a number with a unit")),
    InvalidTask("tool-url-not-http", _set("tools", 0, "url", value="ftp://tools/search"),
                ("spec.tools[0].url", "url must start with http:// or https://")),
    InvalidTask("tool-url-and-mcp", _tool_url_and_mcp,
                ("spec.tools[0]", "a tool needs exactly one of url (an HTTP tool) and mcp")),
    InvalidTask("tool-neither-url-nor-mcp", _tool_without_url_or_mcp,
                ("spec.tools[0]", "a tool needs exactly one of url (an HTTP tool) and mcp")),
    InvalidTask("mcp-url-not-http", _set("tools", 0, value={"name": "m", "mcp": {"url": "ws://x"}}),
                ("spec.tools[0].mcp.url", "mcp.url must start with http:// or https://")),
    InvalidTask("duplicate-tool-names", _duplicate_tool,
                ("spec.tools", "tool names must be unique")),
    InvalidTask("compatible-without-baseurl", _compatible_without_url,
                ("spec.model.baseURL: Required value",
                 "provider openai-compatible needs baseURL")),
    InvalidTask("compact-above-one", _set("contextBudget", value={"compactAt": 1.5}),
                ("spec.contextBudget.compactAt", "should be less than or equal to 1")),
    InvalidTask("unknown-field", _set("costEnvelope", "hardLimitUsd", value="2.00"),
                ('unknown field "spec.costEnvelope.hardLimitUsd"',)),
    InvalidTask("missing-hard-limit", _no_hard_limit,
                ("spec.costEnvelope.hardLimitUSD: Required value",)),
    InvalidTask("plaintext-base-url", _plaintext_url,
                ("spec.model.baseURL", "baseURL must start with https://",
                 "set spec.model.allowPlaintextHTTP: true")),
    InvalidTask("ca-bundle-with-both-refs", _ca_bundle("configMapKeyRef", "secretKeyRef"),
                ("spec.model.caBundle",
                 "caBundle needs exactly one of configMapKeyRef and secretKeyRef")),
    InvalidTask("ca-bundle-with-no-ref", _ca_bundle(),
                ("spec.model.caBundle",
                 "caBundle needs exactly one of configMapKeyRef and secretKeyRef")),
)
