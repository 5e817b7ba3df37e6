"""The redactor the evaluator runs: the sidecar's (:mod:`tether_sidecar.redact`) as a library.

Records arrive redacted by the task's sidecar; the evaluator redacts again (defence in depth: a
sidecar of an older version, or a pattern added since) before a record is stored or sent to the
judge, and redacts the judge's reason before it is journalled, stored or logged. Fail closed
(:class:`RedactionFailed`): a record that cannot be redacted is counted and stored without text,
never judged; a reason that cannot be redacted is replaced by a fixed note.

The seam is :class:`Redactor` (the sidecar's class has this shape); :func:`load` makes one.
"""

from __future__ import annotations

from typing import Any, Protocol

from tether_sidecar.redact import RedactionFailed

__all__ = ["RedactionFailed", "Redactor", "load"]


class Redactor(Protocol):
    engine: str

    def load(self) -> None:
        """Build the engine now (slow, once), so the first record does not wait for it."""
        ...

    def redact_text(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with each finding replaced by ``<TYPE>``, and counts per type."""
        ...

    def redact_json(self, value: Any) -> tuple[Any, dict[str, int]]:
        """Every string of a JSON value redacted, under one deadline for the whole value."""
        ...


def load() -> Redactor:
    """The sidecar's redactor (its engine is built by :meth:`Redactor.load`, not here)."""
    from tether_sidecar.redact import Redactor as SidecarRedactor

    return SidecarRedactor()
