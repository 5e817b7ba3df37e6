"""Shared pieces of the evaluation-record tests: the policy env, the evaluator double's server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tether_examples._serve import serve_in_thread

from ._evaluator import EvaluatorDouble

SCHEMA = {"type": "object", "required": ["total", "currency"],
          "properties": {"total": {"type": "number"}, "currency": {"enum": ["EUR", "USD"]}}}
CHECKS = [{"name": "shape", "target": "answer", "jsonSchema": SCHEMA},
          {"name": "euro", "target": "answer", "regex": r'"currency":"EUR"'}]


def evaluation_env(url: str, checks: list[dict[str, Any]] | None = None,
                   **extra: str) -> dict[str, str]:
    doc = {"evaluatorURL": url, "policies": [
        {"name": "quality", "checks": CHECKS if checks is None else checks, "sampled": True,
         "include": {"failed": True, "retried": False}}]}
    # Fast retries: the tests wait for a delivery, never for a fixed time.
    return {"TETHER_EVALUATION": json.dumps(doc), "TETHER_SIDECAR_EVAL_RETRY_MAX_SECONDS": "0.3",
            **extra}


@contextmanager
def running_evaluator() -> Iterator[tuple[EvaluatorDouble, str]]:
    double = EvaluatorDouble()
    with serve_in_thread(double.app()) as url:
        yield double, url


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """For what the sidecar shows only on a scrape (a metric, /status): polled briefly."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)
