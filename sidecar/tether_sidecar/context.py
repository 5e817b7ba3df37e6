"""The context budget: estimate a prompt's tokens, and compact it before it overflows.

The estimate (estimate.py) anchors on the usage the provider reported for an earlier prompt of
the same conversation and estimates only the messages after it from their text, as a point
estimate biased high and bounds around it. The local BPE tokenizer (o200k_base, shipped in the
bpe-openai wheel) is only the fallback where the bounds straddle a decision that needs the exact
side: whether to compact when the estimated part is too large to compact early on it, and
whether a prompt overflows the budget (no prompt is refused on an estimate). Loading it costs
~70 ms and ~100 MB of the sidecar's memory, which every agent pod pays; in the common case it
is never loaded. docs/sidecar.md gives the figures.

Compaction splits the messages into tiers: permanent (system prompt and the task: the first
``tiers.permanentMessages`` messages), working (the last ``tiers.workingMessages`` messages and
the last ``keepLastToolResults`` tool results, with the calls that produced them) and archivable
(the rest, which are contiguous). ``truncate`` drops the archivable tier behind a note;
``summarize`` replaces it by a summary the model writes, cached so that the next call, which
repeats the same history, reuses it instead of paying again. A prompt that extends one that was
compacted is compacted too, without counting: it is longer still.

A compaction that leaves the prompt as permanent tier + note + working tier is a context
boundary (boundary.py): the caller writes it, with the archived messages, to the state dir; the
summaries cache is seeded from there on start-up (:meth:`ContextManager.seed`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tether_api import ContextBudget

from .dialects import Dialect, Message
from .errors import ContextBudgetExceeded
from .estimate import (
    BIAS,
    HIGH,
    LOW,
    Anchor,
    Anchors,
    Calibration,
    Estimate,
    Prompt,
    overhead,
    text_tokens,
)
from .tokenizer import TokenCounter

__all__ = ["Compaction", "ContextManager", "Estimate", "TokenCounter", "digest"]

# Where the bounds straddle the threshold, compaction may come up to this fraction of the budget
# early rather than count exactly (0.75 instead of 0.8 at worst, inside the headroom compactAt
# leaves); when anchored on a counted prompt, up to the uncertainty of the new messages.
EARLY = 0.05
# Without an anchor, a prompt whose byte count (a byte-level BPE's upper bound) is below this
# fraction of the threshold is not estimated further: nothing depends on it (~0.3 µs/KB).
_CHEAP = 0.5
_MAX_BYTES_PER_TOKEN = 16  # a floor for the lower bound of a prompt only measured in bytes


@dataclass(frozen=True)
class Compaction:
    strategy: str
    before: int
    after: int
    archived_messages: int
    reused_summary: bool
    # A boundary: the prompt is now permanent + note + working tier, the note standing for
    # ``archived`` whole (a new summary, or the one cached for exactly these messages).
    boundary: bool = False
    archived: tuple[Message, ...] = ()
    summary: str | None = None
    key: tuple[int, str] = (0, "")  # the summaries cache key of ``archived``


def _size(texts: list[str]) -> int:
    return sum(len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts)


class ContextManager:
    def __init__(self, budget: ContextBudget, prompt_budget: int, counter: TokenCounter) -> None:
        self.budget = budget
        self.limit = prompt_budget
        self.threshold = int(prompt_budget * budget.compact_at)
        self.early = max(1, int(prompt_budget * EARLY))
        self.counter = counter
        self.anchors = Anchors()
        self.calibration = Calibration()
        # (number of archived messages covered, sha256 of them) -> summary text
        self._summaries: dict[tuple[int, str], str] = {}

    def seed(self, summaries: dict[tuple[int, str], str]) -> None:
        """Summaries made before a restart (read back from the volume by boundary.py)."""
        self._summaries.update(summaries)

    def estimate(self, body: dict[str, Any], dialect: Dialect, *, exact: bool = False) -> Estimate:
        """Provider tokens of this prompt: the anchor's count plus the part after it, estimated
        (or, ``exact``, counted with the tokenizer)."""
        prompt = Prompt.of(body)
        anchor = self.anchors.find(prompt)
        part: dict[str, Any] = {"messages": list(prompt.messages[len(anchor.prompt.messages):]
                                                 if anchor else prompt.messages)}
        if anchor is None:
            part.update(system=body.get("system"), tools=body.get("tools"))
        texts = list(dialect.texts(part))
        base = overhead(part["messages"], dialect.images(part), anchor is None)
        low, high = (anchor.low + base, anchor.high + base) if anchor else (base, base)
        if exact:
            counted = self.counter.count(texts)
            tokens = high + int(counted * self.counter.ratio) + 1
            return Estimate(tokens, anchor is None or anchor.low == anchor.high, counted, tokens,
                            tokens, prompt, anchor, 0.0, high)
        size = _size(texts)
        f = self.calibration.factor(dialect.name)
        cap = math.ceil(size * max(1.0, f))  # a byte-level BPE makes at most one token a byte
        if anchor is None and high + cap < self.threshold * _CHEAP:
            return Estimate(high + cap, False, 0, low + size // _MAX_BYTES_PER_TOKEN, high + cap,
                            prompt, None, 0.0, base)
        central, _ = text_tokens(texts)
        part_high = min(cap, math.ceil(central * HIGH * f))
        part_low = min(part_high, int(central * LOW * f))
        part_point = min(part_high, max(part_low, math.ceil(central * BIAS * f)))
        return Estimate(high + part_point, False, 0, low + part_low, high + part_high, prompt,
                        anchor, central, high)

    def observe(self, est: Estimate, reported: int, dialect: Dialect) -> None:
        """The provider reported ``reported`` input tokens for the prompt ``est`` was made of:
        anchor later prompts of the conversation on it, and calibrate the estimates."""
        if est.prompt is None:
            return
        if reported > 0 and self.calibration.observe(dialect.name, est, reported):
            self.anchors.add(Anchor(est.prompt, reported, reported))
            if est.counted:
                self.counter.observe(est.counted, reported - est.base)
        elif est.central or est.anchor is not None:
            # No usable report: anchor on our own bounds, so the same prefix is not estimated
            # again on the next call (~2 µs/KB each time); bounds from bytes alone are too wide.
            self.anchors.add(Anchor(est.prompt, est.low, est.high))

    def _compact(self, est: Estimate, body: dict[str, Any], dialect: Dialect
                 ) -> tuple[bool, Estimate]:
        """Whether the prompt must be compacted. Where the bounds straddle the threshold it is
        compacted early, never late, when the uncertainty is small: at most ``self.early``
        tokens, or only that of the messages added since a prompt the provider counted (less
        than a step early). Counted exactly when it is wider (no anchor: the whole prompt)."""
        anchor = est.anchor
        if (anchor is not None and anchor.compacted) or est.low >= self.threshold:
            return True, est
        if est.high < self.threshold:
            return False, est
        if est.width <= self.early or (anchor is not None and anchor.low == anchor.high):
            return True, est
        est = self.estimate(body, dialect, exact=True)
        return est.tokens >= self.threshold, est

    def _check_fits(self, est: Estimate, body: dict[str, Any], dialect: Dialect) -> Estimate:
        """Raise ContextBudgetExceeded when the prompt is over the budget: counted first, never
        refused on an estimate."""
        if est.high <= self.limit:
            return est
        est = self.estimate(body, dialect, exact=True)
        if est.tokens > self.limit:
            raise ContextBudgetExceeded(
                f"the prompt needs about {est.tokens} tokens after compaction, over the budget of "
                f"{self.limit}: the permanent tier (system prompt and task) and the working tier "
                "(latest messages and tool results) alone do not fit; shorten them or raise "
                "spec.contextBudget.maxTokens",
                estimatedTokens=est.tokens,
                budgetTokens=self.limit,
            )
        return est

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
        force: bool = False,
    ) -> tuple[Estimate, Compaction | None]:
        """Make the prompt fit: returns the final estimate and what compaction was done;
        ``force``: compact the archivable tier whole now (a boundary the agent marks).
        Raises ContextBudgetExceeded when even the permanent and working tiers overflow."""
        est = self.estimate(body, dialect)
        compact, est = (True, est) if force else self._compact(est, body, dialect)
        if not compact:
            return est, None
        messages: list[Message] = list(body.get("messages") or [])
        start, end = self.split(messages, dialect)
        archived = messages[start:end]
        compaction: Compaction | None = None
        if archived:
            replacement, reused, summary = await self._replacement(
                archived, messages, start, end, body, dialect, summarize, force)
            if est.prompt is not None:  # so its next, longer version is compacted uncounted
                self.anchors.add(Anchor(est.prompt, est.low, est.high, compacted=True))
            body["messages"] = [*messages[:start], *replacement, *messages[end:]]
            after = self.estimate(body, dialect)
            compaction = Compaction(self.budget.strategy, est.tokens, after.tokens, len(archived),
                                    reused, len(replacement) == 1, tuple(archived), summary,
                                    (len(archived), digest(archived)))
            est = after
        return self._check_fits(est, body, dialect), compaction

    async def _replacement(
        self,
        archived: list[Message],
        messages: list[Message],
        start: int,
        end: int,
        body: dict[str, Any],
        dialect: Dialect,
        summarize: Callable[[list[Message]], Awaitable[str]],
        force: bool,
    ) -> tuple[list[Message], bool, str | None]:
        """The messages that stand for the archivable tier, whether a summary was reused, and
        the summary that stands for all of it (None when truncated, or reused for a prefix)."""
        if self.budget.strategy == "truncate":
            return [dialect.note(
                f"[tether: {len(archived)} earlier messages were removed to keep the prompt "
                f"within its context budget of {self.limit} tokens; {_ARCHIVED}]")], False, None
        # The agent resends its whole history on every call, so the archivable tier of this call
        # usually extends the one summarised last time: reuse that summary for the prefix it
        # covers, and summarise again only when the result would still be over the threshold.
        covered, summary = self._cached_prefix(archived)
        if summary is not None:
            reuse = [dialect.note(_summary_note(covered, summary)), *archived[covered:]]
            if covered == len(archived):
                return reuse, True, summary
            trial = {**body, "messages": [*messages[:start], *reuse, *messages[end:]]}
            if not force and not self._compact(self.estimate(trial, dialect), trial, dialect)[0]:
                return reuse, True, None
            archived_input = reuse  # summarise the old summary and what came after it
        else:
            archived_input = archived
        summary_text = await summarize(archived_input)
        self._summaries[(len(archived), digest(archived))] = summary_text
        return [dialect.note(_summary_note(len(archived), summary_text))], False, summary_text

    def _cached_prefix(self, archived: list[Message]) -> tuple[int, str | None]:
        for covered in sorted({k for k, _ in self._summaries}, reverse=True):
            if covered <= len(archived):
                found = self._summaries.get((covered, digest(archived[:covered])))
                if found is not None:
                    return covered, found
        return 0, None


def digest(value: Any) -> str:
    """sha256 of a message or a list of them, as canonical JSON: the summaries' and the
    archive's keys."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


# The note tells the model the archived messages are not lost, and how to read them back.
_ARCHIVED = ("the messages themselves are archived: call the context_archive tool with "
             '{"query": "<text they contain>"} (or {"from": N, "to": M}) to read them back')


def _summary_note(count: int, summary: str) -> str:
    return f"[tether: summary of {count} earlier messages; {_ARCHIVED}]\n{summary}"


def transcript(messages: list[Message], dialect: Dialect) -> str:
    """Plain text of archived messages for the summariser."""
    lines = []
    for msg in messages:
        body = {"messages": [msg]}
        lines.append(f"{msg.get('role', '?')}: " + " ".join(dialect.texts(body)))
    return "\n".join(lines)
