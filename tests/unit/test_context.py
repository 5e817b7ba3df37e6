"""The context budget: tiers, truncation, summaries (reused when the history grows), overflow."""

from __future__ import annotations

from typing import Any

import pytest

from tether_api import ContextBudget
from tether_sidecar.context import ContextManager, TokenCounter
from tether_sidecar.dialects import ANTHROPIC, OPENAI
from tether_sidecar.errors import ContextBudgetExceeded

COUNTER = TokenCounter()


def manager(limit: int = 2000, **kw: Any) -> ContextManager:
    return ContextManager(ContextBudget.model_validate(kw), limit, COUNTER)


def conversation(steps: int, filler: int = 60) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are a researcher."},
                                  {"role": "user", "content": "TASK: find the population."}]
    for i in range(steps):
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "search",
                                                             "arguments": f'{{"q": "{i}"}}'}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}",
                     "content": f"result {i}: " + "lorem ipsum dolor " * filler})
    return msgs


def test_exact_count_is_close_to_the_tokenizer() -> None:
    body = {"messages": [{"role": "user", "content": "hello world " * 500}]}
    est = manager(limit=10_000).estimate(body, OPENAI, exact=True)
    assert est.exact and 1000 <= est.tokens <= 1020


def test_cheap_bound_is_never_below_the_exact_count() -> None:
    body = {"messages": conversation(3)}
    m = manager(limit=1_000_000)
    cheap, exact = m.estimate(body, OPENAI), m.estimate(body, OPENAI, exact=True)
    assert not cheap.exact and cheap.tokens >= exact.tokens


def test_cached_counts_never_answer_for_a_different_text() -> None:
    """The count cache is keyed cheaply (length, head, tail): texts that share all three but
    differ inside are still counted each on its own, repeatedly, and an equal copy hits."""
    head, tail = "begin " * 20, " end" * 20
    one = head + "x " * 600 + tail
    other = head + "xyzzyplugh " * 109 + "x" + tail
    assert len(one) == len(other) and one[:32] == other[:32] and one[-32:] == other[-32:]
    alone = [TokenCounter().count([t]) for t in (one, other)]
    assert alone[0] != alone[1]
    counter = TokenCounter()
    for _ in range(2):
        assert [counter.count([t]) for t in (one, other)] == alone
    assert counter.count(["".join(list(one))]) == alone[0]  # an equal copy, another object


def test_split_keeps_permanent_and_working_tiers_and_tool_pairs() -> None:
    msgs = conversation(6)
    start, end = manager(keepLastToolResults=2).split(msgs, OPENAI)
    assert start == 2  # system + the task
    assert msgs[end]["role"] == "assistant" and msgs[end + 1]["role"] == "tool"
    assert sum(1 for m in msgs[end:] if m["role"] == "tool") == 2


async def test_truncate_drops_the_archivable_tier_behind_a_note() -> None:
    body = {"messages": conversation(10)}
    m = manager(strategy="truncate", keepLastToolResults=1)

    async def never(_: list[dict[str, Any]]) -> str:
        raise AssertionError("truncate must not call the model")

    est, compaction = await m.fit(body, OPENAI, never)
    assert compaction is not None and compaction.after < compaction.before
    assert est.tokens < 2000
    msgs = body["messages"]
    assert msgs[0]["role"] == "system" and msgs[1]["content"].startswith("TASK")
    assert "earlier messages were removed" in msgs[2]["content"]
    assert msgs[-1]["role"] == "tool" and msgs[-1]["content"].startswith("result 9")


async def test_summary_is_reused_as_the_history_grows() -> None:
    calls: list[int] = []

    async def summarize(archived: list[dict[str, Any]]) -> str:
        calls.append(len(archived))
        return "Searched 0..n; nothing found yet."

    m = manager(keepLastToolResults=1, compactAt=0.5)
    first = {"messages": conversation(8)}
    _, c1 = await m.fit(first, OPENAI, summarize)
    assert c1 is not None and not c1.reused_summary and len(calls) == 1
    # The agent resends its whole (uncompacted) history plus one more step.
    second = {"messages": conversation(9)}
    _, c2 = await m.fit(second, OPENAI, summarize)
    assert c2 is not None and c2.reused_summary and len(calls) == 1
    assert any("summary of" in str(msg.get("content")) for msg in second["messages"])


async def test_permanent_tier_too_big_is_an_explicit_error() -> None:
    body = {"messages": [{"role": "system", "content": "rules " * 3000},
                         {"role": "user", "content": "go"}]}

    async def summarize(_: list[dict[str, Any]]) -> str:
        return "x"

    with pytest.raises(ContextBudgetExceeded) as info:
        await manager(limit=1000).fit(body, OPENAI, summarize)
    assert info.value.details["budgetTokens"] == 1000


def test_anthropic_tool_results_are_recognised() -> None:
    msg = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                        "content": "x"}]}
    assert ANTHROPIC.is_tool_result(msg)
    assert not ANTHROPIC.is_tool_result({"role": "user", "content": "hi"})


def test_calibration_follows_reported_usage() -> None:
    counter = TokenCounter()
    for _ in range(20):
        counter.observe(1000, 1200)
    assert counter.ratio == pytest.approx(1.2, abs=0.01)
