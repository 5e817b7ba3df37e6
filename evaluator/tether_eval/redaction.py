"""The redactor the evaluator runs on what it stores and sends to the judge, and on the judge's
reasons — the sidecar's (``tether_sidecar.redact``), used as a library.

Records arrive redacted by the task's sidecar; the evaluator redacts again (defence in depth: a
sidecar of an older version, or a pattern added since) before a record is stored, and redacts the
judge's reason before it is journalled, stored or logged. Fail closed: a redactor that raises
makes the record a redaction failure (counted, stored without text, never judged) and a reason
that cannot be redacted is replaced by a fixed note.

The seam is :class:`Redactor`; :func:`load` adapts the sidecar's module to it.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

__all__ = ["RedactionError", "Redactor", "Withhold", "load", "redact_value"]


class RedactionError(Exception):
    """Text could not be redacted; the caller fails closed."""


class Redactor(Protocol):
    engine: str

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with each finding replaced, and the count of findings per entity type;
        raises :class:`RedactionError` when it cannot vouch for the result."""
        ...


class Withhold:
    """Used while no redactor can be loaded: nothing passes (every text is a failure)."""

    engine = "none"

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        raise RedactionError("no redactor is installed (tether_sidecar.redact did not import): "
                             "install the sidecar package with its redaction extra")


class _Sidecar:
    def __init__(self, module: Any) -> None:
        self._fn = module.redact_text
        self.engine = str(getattr(module, "ENGINE", "tether_sidecar.redact"))

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        try:
            out, findings = self._fn(text)
        except Exception as exc:  # fail closed on any redactor failure, named in the error
            raise RedactionError(f"{type(exc).__name__}: {exc}") from exc
        return str(out), dict(findings)


def load() -> Redactor:
    """The sidecar's redactor, or :class:`Withhold` when it is not installed."""
    try:
        module = importlib.import_module("tether_sidecar.redact")
    except ImportError:
        return Withhold()
    return _Sidecar(module)


def redact_value(r: Redactor, value: Any, findings: dict[str, int]) -> Any:
    """Every string in a JSON value redacted (keys too); counts added to ``findings``."""
    if isinstance(value, str):
        out, found = r.redact(value)
        for kind, n in found.items():
            findings[kind] = findings.get(kind, 0) + n
        return out
    if isinstance(value, list):
        return [redact_value(r, v, findings) for v in value]
    if isinstance(value, dict):
        return {redact_value(r, k, findings): redact_value(r, v, findings)
                for k, v in value.items()}
    return value
