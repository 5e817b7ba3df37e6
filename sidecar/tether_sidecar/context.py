"""The context budget: estimate a prompt's tokens, and compact it before it overflows.

Estimation uses a local BPE tokenizer (bpe-openai ships its encodings, so nothing is fetched at run
time), calibrated by the ``usage`` the provider reported for earlier calls. Tokenising costs about
30 µs per KB, so it is done only when it can change a decision: a byte-level BPE never makes more
tokens than the text has bytes, so when even the byte count (plus per-message overhead) is far
below the thresholds the exact count is skipped.

Compaction splits the messages into tiers: permanent (system prompt and the task: the first
``tiers.permanentMessages`` messages), working (the last ``tiers.workingMessages`` messages and
the last ``keepLastToolResults`` tool results, with the calls that produced them) and archivable
(the rest, which are contiguous). ``truncate`` drops the archivable tier behind a note;
``summarize`` replaces it by a summary the model writes, cached so that the next call, which
repeats the same history, reuses it instead of paying again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tether_api import ContextBudget

from .dialects import IMAGE_TOKENS, Dialect, Message
from .errors import ContextBudgetExceeded

__all__ = ["Compaction", "ContextManager", "Estimate", "TokenCounter"]

_PER_MESSAGE = 4  # role and separators per message; OpenAI's published counting rule
_PER_REQUEST = 8


class TokenCounter:
    """Counts tokens with o200k_base, loaded on the first exact count (~70 ms, ~100 MB):
    most prompts never need one, and every agent pod pays for the sidecar's memory."""

    # An agent resends its whole history on every call, so most texts were counted before.
    CACHE_CHARS = 16 * 1024 * 1024  # the cache's texts hold at most this many characters

    def __init__(self) -> None:
        self._enc: Any = None
        self.ratio = 1.0  # provider tokens per counted token, learnt from usage
        # Keyed by length, head and tail, and the text compared whole on a hit: every call's
        # texts are new str objects, and hashing one whole costs ~15 µs per 100 KB (on every
        # call), comparing it ~1 µs. Texts that share the key just replace each other.
        self._cache: dict[tuple[int, str, str], tuple[str, int]] = {}
        self._cached_chars = 0

    def count(self, texts: list[str]) -> int:
        total = 0
        for text in texts:
            if not text:
                continue
            key = (len(text), text[:32], text[-32:])
            hit = self._cache.get(key)
            if hit is not None and hit[0] == text:
                total += hit[1]
                continue
            if self._enc is None:
                import bpe_openai

                self._enc = bpe_openai.get_encoding("o200k_base")
            n = len(self._enc.encode_ordinary(text))
            if len(text) > 256:  # short texts are cheaper to count than to keep
                if hit is None:
                    if self._cached_chars + len(text) > self.CACHE_CHARS:
                        self._cache.clear()
                        self._cached_chars = 0
                    self._cached_chars += len(text)
                self._cache[key] = (text, n)
            total += n
        return total

    def observe(self, counted: int, reported: int) -> None:
        """Calibrate from a provider's reported prompt tokens for a prompt we counted."""
        if counted > 64 and reported > 0:
            observed = min(2.0, max(0.5, reported / counted))
            self.ratio = 0.7 * self.ratio + 0.3 * observed


@dataclass(frozen=True)
class Estimate:
    tokens: int
    exact: bool  # counted with the tokenizer (else a byte-count upper bound)
    counted: int  # raw tokenizer count, for calibration (0 when not counted)


@dataclass(frozen=True)
class Compaction:
    strategy: str
    before: int
    after: int
    archived_messages: int
    reused_summary: bool


def _overhead(body: dict[str, Any], dialect: Dialect) -> int:
    messages = body.get("messages") or ()
    return _PER_REQUEST + _PER_MESSAGE * len(messages) + IMAGE_TOKENS * dialect.images(body)


class ContextManager:
    def __init__(self, budget: ContextBudget, prompt_budget: int, counter: TokenCounter) -> None:
        self.budget = budget
        self.limit = prompt_budget
        self.threshold = int(prompt_budget * budget.compact_at)
        self.counter = counter
        # (number of archived messages covered, sha256 of them) -> summary text
        self._summaries: dict[tuple[int, str], str] = {}

    def upper_bound(self, body: dict[str, Any], dialect: Dialect) -> int:
        texts = dialect.texts(body)
        return sum(len(t.encode("utf-8")) for t in texts) + _overhead(body, dialect)

    def estimate(self, body: dict[str, Any], dialect: Dialect, *, exact: bool = False) -> Estimate:
        """Tokens the provider will bill for this prompt (calibrated)."""
        bound = self.upper_bound(body, dialect)
        if not exact and bound * max(1.0, self.counter.ratio) < self.threshold / 2:
            return Estimate(int(bound * max(1.0, self.counter.ratio)), False, 0)
        counted = self.counter.count(list(dialect.texts(body))) + _overhead(body, dialect)
        return Estimate(int(counted * self.counter.ratio) + 1, True, counted)

    def split(self, messages: list[Message], dialect: Dialect) -> tuple[int, int]:
        """Indices [start, end) of the archivable tier; start == end when there is none."""
        start = 0
        while start < len(messages) and dialect.is_permanent(messages[start]):
            start += 1
        start = min(len(messages), start + self.budget.tiers.permanent_messages)
        end = max(start, len(messages) - self.budget.tiers.working_messages)
        if self.budget.keep_last_tool_results:
            results = [i for i, m in enumerate(messages) if dialect.is_tool_result(m)]
            kept = results[-self.budget.keep_last_tool_results:]
            if kept:
                end = min(end, kept[0])
        # A tool result must stay with the assistant turn that called it: move the boundary back
        # over results and onto their call.
        while start < end < len(messages) and dialect.is_tool_result(messages[end]):
            end -= 1
        return start, max(start, end)

    async def fit(
        self,
        body: dict[str, Any],
        dialect: Dialect,
        summarize: Callable[[list[Message]], Awaitable[str]],
    ) -> tuple[Estimate, Compaction | None]:
        """Make the prompt fit: returns the final estimate and what compaction was done.
        Raises ContextBudgetExceeded when even the permanent and working tiers overflow."""
        est = self.estimate(body, dialect)
        if est.tokens < self.threshold:
            return est, None
        messages: list[Message] = list(body.get("messages") or [])
        start, end = self.split(messages, dialect)
        archived = messages[start:end]
        compaction: Compaction | None = None
        if archived:
            replacement, reused = await self._replacement(archived, messages, start, end, body,
                                                          dialect, summarize)
            body["messages"] = [*messages[:start], *replacement, *messages[end:]]
            after = self.estimate(body, dialect, exact=True)
            compaction = Compaction(self.budget.strategy, est.tokens, after.tokens, len(archived),
                                    reused)
            est = after
        if est.tokens > self.limit:
            raise ContextBudgetExceeded(
                f"the prompt needs about {est.tokens} tokens after compaction, over the budget of "
                f"{self.limit}: the permanent tier (system prompt and task) and the working tier "
                "(latest messages and tool results) alone do not fit; shorten them or raise "
                "spec.contextBudget.maxTokens",
                estimatedTokens=est.tokens,
                budgetTokens=self.limit,
            )
        return est, compaction

    async def _replacement(
        self,
        archived: list[Message],
        messages: list[Message],
        start: int,
        end: int,
        body: dict[str, Any],
        dialect: Dialect,
        summarize: Callable[[list[Message]], Awaitable[str]],
    ) -> tuple[list[Message], bool]:
        """The messages that stand for the archivable tier, and whether a summary was reused."""
        if self.budget.strategy == "truncate":
            return [dialect.note(
                f"[tether: {len(archived)} earlier messages were removed to keep the prompt "
                f"within its context budget of {self.limit} tokens]")], False
        # The agent resends its whole history on every call, so the archivable tier of this call
        # usually extends the one summarised last time: reuse that summary for the prefix it
        # covers, and summarise again only when the result would still be over the threshold.
        covered, summary = self._cached_prefix(archived)
        if summary is not None:
            reuse = [dialect.note(_summary_note(covered, summary)), *archived[covered:]]
            trial = {**body, "messages": [*messages[:start], *reuse, *messages[end:]]}
            if self.estimate(trial, dialect, exact=True).tokens < self.threshold:
                return reuse, True
            archived_input = reuse  # summarise the old summary and what came after it
        else:
            archived_input = archived
        summary_text = await summarize(archived_input)
        self._summaries[(len(archived), _digest(archived))] = summary_text
        return [dialect.note(_summary_note(len(archived), summary_text))], False

    def _cached_prefix(self, archived: list[Message]) -> tuple[int, str | None]:
        for covered in sorted({k for k, _ in self._summaries}, reverse=True):
            if covered <= len(archived):
                found = self._summaries.get((covered, _digest(archived[:covered])))
                if found is not None:
                    return covered, found
        return 0, None


def _digest(messages: list[Message]) -> str:
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _summary_note(count: int, summary: str) -> str:
    return f"[tether: summary of {count} earlier messages]\n{summary}"


def transcript(messages: list[Message], dialect: Dialect) -> str:
    """Plain text of archived messages for the summariser."""
    lines = []
    for msg in messages:
        body = {"messages": [msg]}
        lines.append(f"{msg.get('role', '?')}: " + " ".join(dialect.texts(body)))
    return "\n".join(lines)
