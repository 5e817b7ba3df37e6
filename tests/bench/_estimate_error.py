"""The token estimate against the tokenizer on the generated corpus (tests/bench/_corpus.py).

Each conversation is replayed call by call as an agent sends it, one step longer each time, to a
provider that counts with o200k_base (what the sidecar's exact count gives: the texts' tokens and
the per-message rule). The estimate of each call is anchored on the previous call's reported
count, as in the sidecar; the first call of a conversation has no anchor. Reported separately: the
anchored calls (the design), the first calls, and every call estimated whole without anchors.
"""

from __future__ import annotations

import statistics
from typing import Any

from tether_api import ContextBudget
from tether_sidecar.context import ContextManager, TokenCounter
from tether_sidecar.dialects import OPENAI

from ._corpus import conversations

__all__ = ["LARGE", "corpus_error"]

LARGE = 8000  # a prompt this long is near a small budget: where the estimate decides


class _Unused(TokenCounter):
    def count(self, texts: list[str]) -> int:
        raise AssertionError("the estimate asked for an exact count")


def _manager(counter: TokenCounter) -> ContextManager:
    # A small budget: the byte-count shortcut for prompts far below the threshold (where nothing
    # depends on the figure) never applies, so every figure is the text estimate.
    return ContextManager(ContextBudget(), 256, counter)


def _stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"n": 0}
    return {"n": len(errors), "mean_abs": statistics.fmean(abs(e) for e in errors),
            "max_abs": max(abs(e) for e in errors), "mean": statistics.fmean(errors),
            "min": min(errors), "max": max(errors),
            "under_share": sum(e < 0 for e in errors) / len(errors)}


def corpus_error(count: int = 40, steps: int = 30) -> dict[str, Any]:
    """Relative errors (estimate - tokenizer) / tokenizer over the corpus' calls."""
    exact = _manager(TokenCounter())
    anchored: list[float] = []
    large: list[float] = []  # anchored, prompts of LARGE tokens or more
    first: list[float] = []
    whole: list[float] = []
    outside = 0
    tokens = 0
    for msgs in conversations(count, steps):
        m = _manager(_Unused())
        for n in range(steps + 1):
            body = {"messages": msgs[:2 + 2 * n]}
            truth = exact.estimate(body, OPENAI, exact=True).tokens
            est = m.estimate(body, OPENAI)
            error = (est.tokens - truth) / truth
            (anchored if est.anchor is not None else first).append(error)
            if est.anchor is not None and truth >= LARGE:
                large.append(error)
            outside += not est.low <= truth <= est.high
            whole.append((_manager(_Unused()).estimate(body, OPENAI).tokens - truth) / truth)
            m.observe(est, truth, OPENAI)
            tokens += truth
    return {"conversations": count, "calls": count * (steps + 1),
            "mean_prompt_tokens": tokens // (count * (steps + 1)),
            "anchored": _stats(anchored), f"anchored_from_{LARGE}_tokens": _stats(large),
            "first_call": _stats(first),
            "whole_prompt_unanchored": _stats(whole), "truth_outside_bounds": outside}
