from __future__ import annotations

from typing import Any

import pytest


def task_dict(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "agent": {"image": "example/agent:1"},
        "task": {"instructions": "Find the answer."},
        "model": {"provider": "openai", "name": "gpt-4o"},
        "costEnvelope": {"softLimitUSD": "1.00", "hardLimitUSD": "2.00"},
    }
    spec.update(spec_overrides)
    return {"apiVersion": "tether.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": "demo"}, "spec": spec}


@pytest.fixture
def minimal_task() -> dict[str, Any]:
    return task_dict()
