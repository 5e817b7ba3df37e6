"""Redaction before anything leaves the task: PII and secrets become ``<TYPE>``, or nothing leaves.

The engine is Presidio's analyzer (presidio-analyzer, Microsoft, maintained) used for its pattern
and checksum recognizers only: e-mail, phone (Google's libphonenumber port), credit card (Luhn),
IBAN (mod-97), IP v4/v6, US SSN. No named-entity model is loaded (the spaCy models are not on
PyPI), so person names are not found. Our credential patterns (``redact_patterns``) run as
Presidio ``PatternRecognizer``s on the same machinery. docs/evaluation.md "## Redaction" gives
the measurements the choice rests on.

Fail closed: ``RedactionFailed`` (with a reason: ``too_large``, ``timeout``, ``engine_error``,
``engine_missing``, ``config``) whenever the record cannot be redacted in full; the caller then
sends no text and counts the failure. Findings are counts per type, never values.

Offline: Presidio's e-mail recognizer asks ``tldextract`` for the public suffix list, which it
fetches over the network (presidio#1205); ours validates against the list ``tldextract`` ships
and writes no cache (the sidecar's root file system is read-only).

Deadline: the engine runs in this redactor's own worker thread; a caller waits at most
``Limits.budget_s`` for a record. Presidio's ``regex`` patterns release the GIL while matching,
so a slow pattern does not stall the event loop. A run past its budget cannot be killed: it
finishes in the background while later records queue behind it and fail closed in their turn;
the thread is a daemon, so it does not hold up the process's exit.
Presidio skips (and logs) a pattern that exceeds its own ``REGEX_TIMEOUT_SECONDS``, which would
be a silent gap; ``load`` refuses a value below our budget, so our deadline always fires first.

Importing this module does not import the engine (~95 MB resident, ~1-2 s): ``load`` does, on
the first record. ``tether_sidecar.app`` must not import the engine (tests check).
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from .redact_patterns import ENTROPY_CHECKED, SECRET_PATTERNS

__all__ = ["Limits", "RedactionFailed", "Redactor", "Span"]

Findings = dict[str, int]
Span = tuple[str, int, int]  # (entity type, start, end): offsets only, never the text


class RedactionFailed(Exception):
    """The record could not be redacted in full: send none of its text, count it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"Redaction failed ({reason}): {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """What one record may cost. A record past either is refused, not half redacted."""

    max_chars: int = 512 * 1024  # characters of strings and keys in one record
    # Wall time for one record, the engine's load excluded. A record at the cap is ~1.1 s of
    # CPU (2.1 ms per KB, docs/benchmarks.md); 5 s leaves room for a busy node and fits the
    # sidecar's 8 s to build and send the last record at shutdown (eval_outbox.FLUSH_SECONDS).
    budget_s: float = 5.0
    phone_regions: tuple[str, ...] = ("US", "GB")  # national formats; +CC numbers any region


class _Deadline(Exception):
    pass


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _build_recognizers(limits: Limits) -> list[Any]:
    """Presidio's PII recognizers plus ours, as one list run in order."""
    import tldextract
    from presidio_analyzer import Pattern, PatternRecognizer, pattern_recognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    if limits.budget_s > pattern_recognizer.REGEX_TIMEOUT_SECONDS:
        raise RedactionFailed("config", "REGEX_TIMEOUT_SECONDS is below the redaction budget "
                              f"({limits.budget_s:g} s): Presidio would skip a slow pattern "
                              "silently; unset it or raise it")
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline(pattern_text).fqdn)

    class SecretRecognizer(PatternRecognizer):
        def __init__(self, entity: str, name: str, regex: str) -> None:
            super().__init__(supported_entity=entity, name=name, global_regex_flags=0,
                             patterns=[Pattern(name, regex, 1.0)])
            self._min_entropy = ENTROPY_CHECKED.get(entity)

        def validate_result(self, pattern_text: str) -> bool | None:
            if self._min_entropy is None:
                return None
            return _entropy(pattern_text) >= self._min_entropy

    ours = [SecretRecognizer(p.entity, p.name, p.regex) for p in SECRET_PATTERNS]
    return [*ours, CreditCardRecognizer(), OfflineEmailRecognizer(), IbanRecognizer(),
            IpRecognizer(), PhoneRecognizer(supported_regions=limits.phone_regions),
            UsSsnRecognizer()]


def merge(spans: Sequence[Span]) -> list[Span]:
    """Overlapping or touching spans as one; the longest names it (the earlier on a tie)."""
    out: list[tuple[str, int, int, int]] = []  # type, start, end, length of the naming span
    for kind, start, end in sorted(spans, key=lambda s: s[1]):
        if out and start <= out[-1][2]:
            k, s, e, n = out[-1]
            out[-1] = (kind, s, max(e, end), end - start) if end - start > n else (
                k, s, max(e, end), n)
        else:
            out.append((kind, start, end, end - start))
    return [(k, s, e) for k, s, e, _ in out]


class _Worker:
    """One daemon thread running jobs in turn. Not a ThreadPoolExecutor: its threads are joined
    at interpreter exit, so a runaway record would hold up the sidecar's shutdown; a daemon
    thread does not. A job cancelled while queued (its caller gave up) never runs."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, job))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tether-redact",
                                                daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            future, job = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)


class Redactor:
    """Redacts text and JSON records; one per process (it owns a worker thread)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._recognizers: list[Any] | None = None
        self._lock = threading.Lock()
        self._worker = _Worker()
        self.engine = "presidio-analyzer (pattern recognizers) + tether secret patterns"

    def load(self) -> None:
        """Import and build the engine (once); ``RedactionFailed`` if it cannot be."""
        with self._lock:
            if self._recognizers is not None:
                return
            try:
                self._recognizers = _build_recognizers(self.limits)
            except ImportError as exc:
                raise RedactionFailed("engine_missing", f"{exc.name or exc} is not installed: "
                                      "install tether's dependencies") from exc
            except RedactionFailed:
                raise
            except Exception as exc:  # a broken engine fails closed too (no record text here)
                raise RedactionFailed("engine_error", f"building the engine raised "
                                      f"{type(exc).__name__}: {exc}") from exc
            from importlib.metadata import version
            self.engine = f"presidio-analyzer {version('presidio-analyzer')} + tether secrets"

    def find(self, text: str) -> list[Span]:
        """Every recognizer's spans in ``text``, merged. No deadline: callers use ``redact_*``."""
        self.load()
        assert self._recognizers is not None
        spans: list[Span] = []
        for rec in self._recognizers:
            spans += [(r.entity_type, r.start, r.end)
                      for r in rec.analyze(text, rec.supported_entities, None)]
        return merge(spans)

    def redact_text(self, text: str) -> tuple[str, Findings]:
        out, findings = self._run(text)
        assert isinstance(out, str)
        return out, findings

    def redact_json(self, value: Any) -> tuple[Any, Findings]:
        """Keys kept, strings redacted, long integers redacted when they hold a finding."""
        return self._run(value)

    async def redact_json_async(self, value: Any) -> tuple[Any, Findings]:
        """``redact_json`` off the event loop (the wait for the worker is a thread too)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.redact_json, value)

    def _run(self, value: Any) -> tuple[Any, Findings]:
        size = _size(value)
        if size > self.limits.max_chars:
            raise RedactionFailed("too_large", f"{size} characters, over the cap of "
                                  f"{self.limits.max_chars}: the record is not sent")
        self.load()
        deadline = time.monotonic() + self.limits.budget_s
        future = self._worker.submit(lambda: self._walk_all(value, deadline))
        try:
            done: tuple[Any, Findings] = future.result(timeout=self.limits.budget_s)
            return done
        except (FutureTimeout, _Deadline) as exc:
            future.cancel()
            raise RedactionFailed("timeout", f"not done within {self.limits.budget_s:g} s: "
                                  "the record is not sent") from exc
        except RedactionFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed on anything the engine raises
            # The type only, no chained cause: an engine's message may quote the text it read.
            raise RedactionFailed("engine_error", f"{type(exc).__name__} in the engine: "
                                  "the record is not sent") from None

    def _walk_all(self, value: Any, deadline: float) -> tuple[Any, Findings]:
        findings: Counter[str] = Counter()
        out = _walk(value, lambda s: self._redact_str(s, deadline, findings))
        return out, dict(findings)

    def _redact_str(self, text: str, deadline: float, findings: Counter[str]) -> str:
        if time.monotonic() > deadline:
            raise _Deadline
        parts, pos = [], 0
        for kind, start, end in self.find(text):
            parts += [text[pos:start], f"<{kind}>"]
            findings[kind] += 1
            pos = end
        parts.append(text[pos:])
        return "".join(parts)


def _size(value: Any) -> int:
    """Characters of strings and keys in a JSON value; refuses what JSON cannot hold."""
    total, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, dict):
            total += sum(len(k) if isinstance(k, str) else 0 for k in v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif not (v is None or isinstance(v, bool | int | float)):
            raise RedactionFailed("engine_error", f"a {type(v).__name__} is not JSON: "
                                  "pass parsed JSON (dict, list, str, number, bool, null)")
    return total


def _walk(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _walk(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, redact) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**8:
        text = str(value)
        out = redact(text)  # a card or SSN written as a number
        return value if out == text else out
    return value
