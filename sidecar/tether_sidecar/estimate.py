"""The prompt's token estimate without a tokenizer: anchored on what the provider reported.

An agent resends its conversation on every call, one step longer each time. The provider's
``usage`` for the previous call is the exact count of that call's prompt, so the next prompt
costs that count plus its new messages. :class:`Anchors` keeps the prompts of recent calls (the
message objects, compared whole: an edited earlier message, another system prompt or tool list is
no match) with the tokens reported for them; a new prompt that starts with one of them is
estimated as that count plus an estimate of the messages after it. Only those are estimated from
their text, so the error is that of a few messages, not of the whole prompt.

The text estimate (:func:`text_tokens`) maps each byte to a class in C (``bytes.translate``) and
counts classes, pairs and runs of them (``bytes.count``, ``split``), ~8 µs/KB against the
tokenizer's ~30 µs/KB and its ~100 MB: words (runs of letters, Latin or 2-byte), words after a
space, capitals inside words (camelCase), digits and runs of digits (o200k splits numbers into
groups of three), punctuation, spaces not before a word (indentation), 2-byte characters and
3-byte ones (CJK) and their runs. Its coefficients were fitted against o200k_base (non-negative
least squares on the relative error) on texts of the generated corpus in tests/bench/_corpus.py
drawn with another seed than the benchmark's; on the benchmark's texts its ratio to the
tokenizer's count lies between 0.83 and 1.28 per text (standard deviation 0.025; per kind of
text the mean is within 1 %). The corpus is generated: real texts spread wider, so :data:`LOW`
and :data:`HIGH` keep a wide margin to bound the true count, and :data:`BIAS` makes the point
estimate an over-estimate for most texts, by little. A byte-level BPE never makes more tokens
than the text has bytes, which caps the upper bound.

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



def _classes() -> bytes:
    """Byte -> class: a lower-case and A upper-case letter, 0 digit, space (and tab), newline,
    b first byte of a 2-byte character (accented Latin, Cyrillic, ...), e of a 3- or 4-byte one
    (CJK, emoji), . anything else; continuation bytes are deleted (one class byte a character)."""
    table = bytearray(b"." * 256)
    for chars, cls in ((b"abcdefghijklmnopqrstuvwxyz", b"a"), (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                       b"A"), (b"0123456789", b"0"), (b" \t", b" "), (b"\n\r", b"\n"),
                       (bytes(range(0xC0, 0xE0)), b"b"), (bytes(range(0xE0, 0x100)), b"e")):
        for c in chars:
            table[c] = cls[0]
    return bytes(table)


def _only(classes: bytes) -> bytes:
    """A table keeping ``classes`` and blanking the rest: ``split()`` then yields their runs."""
    return bytes(c if c in classes else 0x20 for c in range(256))


_CLASSES = _classes()
_CONTINUATION = bytes(range(0x80, 0xC0))
_WORDS, _NUMBERS, _RUNS2, _RUNS3 = _only(b"aAb"), _only(b"0"), _only(b"b"), _only(b"e")
# Letters (any) to a, spaces kept, the rest to .: one count of " a" finds the words after a space.
_SPACED = bytes(0x61 if c in b"aAb" else 0x20 if c == 0x20 else 0x2E for c in range(256))
# o200k tokens per feature (see the module docstring; tests/unit/test_estimate.py checks them).
_W_LETTER, _W_UPPER, _W_CAMEL, _W_WORD, _W_SPACED_WORD = 0.092, 0.078, 1.770, 0.562, 0.102
_W_DIGIT, _W_NUMBER, _W_PUNCT, _W_LOOSE_SPACE = 0.274, 0.972, 0.542, 0.286
_W_CHAR2, _W_RUN2, _W_CHAR3, _W_RUN3 = 0.017, 0.373, 0.528, 0.579

LOW = 0.60  # the true count is at least LOW x the central estimate (corpus: 1/1.28)
HIGH = 1.40  # and at most HIGH x it (corpus: 1/0.83)
BIAS = 1.03  # the point estimate: above the tokenizer's count for ~85 % of the corpus' texts
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
        size += len(b)
        m = b.translate(_CLASSES, _CONTINUATION)
        upper = m.count(b"A")
        spaced_words = m.translate(_SPACED).count(b" a")
        total += (_W_LETTER * (m.count(b"a") + upper) + _W_UPPER * upper
                  + _W_CAMEL * m.count(b"aA") + _W_WORD * len(m.translate(_WORDS).split())
                  + _W_SPACED_WORD * spaced_words + _W_DIGIT * m.count(b"0")
                  + _W_NUMBER * len(m.translate(_NUMBERS).split()) + _W_PUNCT * m.count(b".")
                  + _W_LOOSE_SPACE * (m.count(b" ") - spaced_words))
        if not text.isascii():
            total += (_W_CHAR2 * m.count(b"b") + _W_RUN2 * len(m.translate(_RUNS2).split())
                      + _W_CHAR3 * m.count(b"e") + _W_RUN3 * len(m.translate(_RUNS3).split()))
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
