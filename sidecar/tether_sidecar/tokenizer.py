"""The exact count: o200k_base from the bpe-openai wheel (nothing is fetched at run time).

Imported and loaded only on the first exact count: the anchored estimate (estimate.py) makes one
unnecessary in the common case, and loading it costs ~70 ms and ~100 MB in every agent pod.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TokenCounter"]


class TokenCounter:
    """Counts tokens with o200k_base, loaded on the first exact count (~70 ms, ~100 MB):
    most prompts never need one, and every agent pod pays for the sidecar's memory."""

    # An agent resends its whole history on every call, so most texts were counted before. Kept
    # small: with the anchored estimate an exact count is rare, and the pod's memory limit must
    # hold the tokenizer and this cache on top of the sidecar's usual footprint.
    CACHE_CHARS = 4 * 1024 * 1024  # the cache's texts hold at most this many characters

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
