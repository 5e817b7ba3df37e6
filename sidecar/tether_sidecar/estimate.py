"""The prompt's token estimate without a tokenizer: anchored on what the provider reported.

An agent resends its conversation on every call, one step longer each time. The provider's
``usage`` for the previous call is the exact count of that call's prompt, so the next prompt
costs that count plus its new messages. :class:`Anchors` keeps the prompts of recent calls (the
message objects, compared whole: an edited earlier message, another system prompt or tool list is
no match) with the tokens reported for them; a new prompt that starts with one of them is
estimated as that count plus an estimate of the messages after it. Only those are estimated from
their text, so the error is that of a few messages, not of the whole prompt.

The text estimate (:func:`text_tokens`) counts byte classes in C (``bytes.translate``, ~2 µs/KB
against the tokenizer's ~30 µs/KB and its ~100 MB): word boundaries, punctuation, digits,
letters beyond a word's usual length (identifiers, hashes, base64), 3-byte characters (CJK). Its
coefficients were fitted against o200k_base on the generated corpus in tests/bench/_corpus.py;
there its ratio to the tokenizer's count lies between 0.75 and 1.60 per text, so
:data:`LOW` and :data:`HIGH` bound the true count, and :data:`BIAS` makes the point estimate an
over-estimate for most texts: compaction then triggers early, never late. A byte-level BPE never
makes more tokens than the text has bytes, which caps the upper bound.

Model families differ in tokenizer; :data:`FAMILY` starts each at a conservative factor over
o200k, and each anchored call's reported usage calibrates it (:meth:`Calibration.observe`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .dialects import IMAGE_TOKENS

__all__ = ["BIAS", "FAMILY", "HIGH", "LOW", "Anchor", "Anchors", "Calibration", "Estimate",
           "Prompt", "overhead", "text_tokens"]

log = logging.getLogger(__name__)

_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGITS = b"0123456789"
_SPACES = b" \n\t\r"
_HIGH_BYTES = bytes(range(0x80, 0x100))
_LEAD2 = bytes(range(0xC0, 0xE0))  # first byte of a 2-byte character (Latin, Cyrillic, ...)
_LEAD3 = bytes(range(0xE0, 0x100))  # of a 3- or 4-byte one (CJK, emoji)

LOW = 0.60  # the true count is at least LOW x the central estimate (corpus: 1/1.60)
HIGH = 1.40  # and at most HIGH x it (corpus: 1/0.75)
BIAS = 1.10  # the point estimate: above the tokenizer's count for most of the corpus' texts
# Provider tokens per o200k token, before usage calibrates it: OpenAI's current models use
# o200k; Claude's tokenizer makes more tokens of the same text, so Anthropic starts high.
FAMILY = {"openai": 1.0, "anthropic": 1.25}
_DEFAULT_FAMILY = 1.25


def text_tokens(texts: Iterable[str]) -> tuple[float, int]:
    """Central estimate of o200k tokens for ``texts``, and their UTF-8 bytes (the hard cap)."""
    total = 0.0
    size = 0
    for text in texts:
        if not text:
            continue
        b = text.encode("utf-8")
        n = len(b)
        letters = n - len(b.translate(None, _LETTERS))
        digits = n - len(b.translate(None, _DIGITS))
        spaces = n - len(b.translate(None, _SPACES))
        high = n - len(b.translate(None, _HIGH_BYTES)) if not text.isascii() else 0
        lead2 = n - len(b.translate(None, _LEAD2)) if high else 0
        lead3 = n - len(b.translate(None, _LEAD3)) if high else 0
        punct = n - letters - digits - spaces - high
        long_runs = max(0, letters + lead2 // 2 - 5 * spaces)
        total += (1.14 * spaces + 0.54 * punct + 0.61 * digits + 0.1 * lead2 + 0.4 * lead3
                  + 0.57 * long_runs + 1.0)
        size += n
    return total, size


@dataclass(frozen=True)
class Prompt:
    """What a prompt is made of, to recognise a later prompt that starts with it."""

    messages: tuple[Any, ...]
    rest: tuple[Any, ...]  # the other parts that count (system, tools): must be equal

    @classmethod
    def of(cls, body: dict[str, Any]) -> Prompt:
        return cls(tuple(body.get("messages") or ()), (body.get("system"), body.get("tools")))

    def starts_with(self, other: Prompt) -> bool:
        k = len(other.messages)
        if k > len(self.messages) or self.rest != other.rest:
            return False
        # Cheap rejections first; then every message compared whole (equal dicts, not hashes).
        return (k == 0 or self.messages[k - 1] == other.messages[k - 1]) and \
            self.messages[:k] == other.messages


@dataclass(frozen=True)
class Anchor:
    prompt: Prompt
    low: int  # tokens of the prompt: the provider's report (low == high), or bounds
    high: int
    compacted: bool = False  # compacted before it was sent: so is every prompt that extends it


@dataclass(frozen=True)
class Estimate:
    """Provider tokens of a prompt: ``tokens`` is the (biased) point estimate, ``low`` and
    ``high`` bound the true count. ``exact``: counted (reported or tokenizer) with no estimated
    part. ``counted``: raw tokenizer tokens behind the figure (0 when none were counted)."""

    tokens: int
    exact: bool
    counted: int = 0
    low: int = 0
    high: int = 0
    prompt: Prompt | None = None
    anchor: Anchor | None = None
    central: float = 0.0  # the estimated part, o200k tokens before the family factor
    base: int = 0  # the part known without estimating: the anchor's count and the overhead

    @property
    def width(self) -> int:
        return self.high - self.low


class Anchors:
    """Prompts of recent calls with their token counts, newest first, at most ``size``: a
    sidecar serves one agent, whose main conversation is the newest; a few more keep side
    conversations (sub-agents, summaries) from evicting it."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: list[Anchor] = []

    def find(self, prompt: Prompt) -> Anchor | None:
        best: Anchor | None = None
        for anchor in self._items:
            if (best is None or len(anchor.prompt.messages) > len(best.prompt.messages)) and \
                    prompt.starts_with(anchor.prompt):
                best = anchor
        return best

    def add(self, anchor: Anchor) -> None:
        # A prompt that the new one extends is superseded by it.
        self._items = [anchor, *(a for a in self._items
                                 if not anchor.prompt.starts_with(a.prompt))][:self.size]

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Calibration:
    """Provider tokens per estimated o200k token, per family, learnt from anchored calls."""

    factors: dict[str, float] = field(default_factory=dict)
    _warned: bool = False

    def factor(self, family: str) -> float:
        return self.factors.get(family, FAMILY.get(family, _DEFAULT_FAMILY))

    def observe(self, family: str, estimate: Estimate, reported: int) -> bool:
        """Learn from ``reported`` tokens for the prompt ``estimate`` was made of; False (and a
        warning, once) when the report cannot be the count of that prompt — a server that
        reports made-up usage must not become an anchor."""
        if not estimate.low // 3 <= reported <= max(estimate.high * 3, 64):
            if not self._warned:
                self._warned = True
                log.warning("The provider reported %d input tokens for a prompt estimated at "
                            "%d-%d; not used to estimate later prompts (said once)", reported,
                            estimate.low, estimate.high)
            return False
        anchor = estimate.anchor
        if estimate.central >= 64 and (anchor is None or anchor.low == anchor.high):
            observed = (reported - estimate.base) / estimate.central
            f = self.factor(family)
            self.factors[family] = min(2.0, max(0.7, 0.8 * f + 0.2 * observed))
        return True


def overhead(messages: Sequence[Any], images: int, whole: bool) -> int:
    """Tokens a provider adds around messages (OpenAI's published rule: ~4 each, 8 a request),
    and the fixed figure for an image part."""
    return (8 if whole else 0) + 4 * len(messages) + IMAGE_TOKENS * images
