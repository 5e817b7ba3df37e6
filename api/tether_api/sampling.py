"""Which tasks an EvaluationPolicy's judge sees, and which stratum a task counts in.

``sampled`` hashes the task's UID alone, never the policy's name: two policies with the same
rate judge the same tasks (their verdicts can be compared task by task), a lower rate's sample
is part of a higher rate's (raising the rate only adds tasks), and the operator, the sidecar and
the evaluator all get the same answer without talking to each other.

Strata only split the counting: each stratum is sampled at the policy's rate, with no top-up for
a small one (a top-up would break both properties above and bias the pass rate). A small
stratum's pass rate is reported with its Wilson interval, which says how little it knows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

__all__ = ["NO_LABEL", "position", "sampled", "stratum"]

NO_LABEL = "<none>"  # '<' is not allowed in a label value: never confused with one
_SPACE = 2**64


def position(uid: str) -> Fraction:
    """Where the task falls in [0, 1): the first 8 bytes of sha256(uid), big-endian, over 2^64."""
    head = hashlib.sha256(uid.encode("utf-8")).digest()[:8]
    return Fraction(int.from_bytes(head, "big"), _SPACE)


def sampled(uid: str, rate: Decimal | str) -> bool:
    """Whether the task is in the sample of a policy with this rate (0 to 1). Exact arithmetic:
    a rate of "0.1" is one tenth, not the float nearest it."""
    exact = Fraction(Decimal(rate))
    if not 0 <= exact <= 1:
        raise ValueError(f"sampling rate {rate} is not between 0 and 1")
    return position(uid) < exact


def stratum(labels: Mapping[str, str], keys: Sequence[str]) -> str:
    """The task's stratum: ``key=value`` for each key, sorted by key, joined by commas; a missing
    label reads ``key=<none>``. No keys: the one stratum ``""``. The same set of keys in any order
    gives the same strata."""
    return ",".join(f"{key}={labels.get(key, NO_LABEL)}" for key in sorted(set(keys)))
