"""Refuse misspelled settings: a ``TETHER_<PART>_*`` environment variable that no setting reads.

pydantic-settings ignores unknown variables under its prefix (``extra="forbid"`` covers only
keyword arguments), so ``TETHER_OPERATOR_WORKER=4`` would silently leave the default in place.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping

__all__ = ["reject_unknown"]


def reject_unknown(prefix: str, fields: Iterable[str],
                   environ: Mapping[str, str] = os.environ) -> None:
    """Raise ValueError naming every ``prefix*`` variable that is not one of ``fields``."""
    known = {prefix + f.upper() for f in fields}
    wrong = []
    for key in sorted(k.upper() for k in environ if k.upper().startswith(prefix)):
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            wrong.append(key + (f" (did you mean {close[0]}?)" if close else ""))
    if wrong:
        raise ValueError(f"unknown setting{'s' if len(wrong) > 1 else ''}: "
                         f"{', '.join(wrong)}; known: {', '.join(sorted(known))}")
