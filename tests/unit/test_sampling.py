"""tether_api.sampling (issue #10): the sample's size matches the rate, it depends on the task
alone (two policies with one rate pick the same tasks), a lower rate's sample is inside a
higher one's, and strata are canonical."""

from __future__ import annotations

import hashlib
import math
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether_api.sampling import NO_LABEL, position, sampled, stratum

rates = st.decimals(min_value=0, max_value=1, places=6, allow_nan=False, allow_infinity=False)
uids = st.uuids().map(str)
N = 20_000
UIDS = [str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % 2**128, version=4)) for i in range(N)]


@given(rate=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.99"), places=2))
@settings(max_examples=25, deadline=None)
def test_observed_rate_matches(rate: Decimal) -> None:
    """Over 20,000 UIDs the share sampled is the rate within 5 binomial standard deviations
    (a false failure about once in 1.7 million runs)."""
    share = sum(sampled(u, rate) for u in UIDS) / N
    sd = math.sqrt(float(rate) * (1 - float(rate)) / N)
    assert abs(share - float(rate)) < 5 * sd, (share, rate)


@given(uid=uids, rate=rates)
def test_two_policies_with_one_rate_pick_the_same_tasks(uid: str, rate: Decimal) -> None:
    # No policy in the arguments: the decision is the task's and the rate's; written as a
    # string (as the CRD holds it) or as a Decimal, the same.
    assert sampled(uid, rate) == sampled(uid, format(rate, "f"))


@given(uid=uids, low=rates, high=rates)
def test_a_lower_rate_sample_is_inside_a_higher_one(uid: str, low: Decimal,
                                                    high: Decimal) -> None:
    low, high = min(low, high), max(low, high)
    assert not sampled(uid, low) or sampled(uid, high)


@given(uid=uids)
def test_rate_zero_samples_nothing_and_one_everything(uid: str) -> None:
    assert not sampled(uid, "0") and sampled(uid, "1")


def test_the_hash_is_the_contracts() -> None:
    """sha256(uid)[:8] as a big-endian integer over 2^64, compared exactly."""
    uid = "8f14e45f-ceea-467f-9a3b-2b5b5f3c2a11"
    head = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")
    assert position(uid) * 2**64 == head
    # Exactly at the task's position: not sampled (strictly below), one step above: sampled.
    exact = Decimal(head) / Decimal(2**64)
    assert sampled(uid, exact + Decimal("1e-19")) and not sampled(uid, exact - Decimal("1e-19"))


@pytest.mark.parametrize("rate", ["-0.1", "1.01"])
def test_a_rate_outside_zero_one_is_refused(rate: str) -> None:
    with pytest.raises(ValueError, match="not between 0 and 1"):
        sampled("u", rate)


def test_strata_are_canonical() -> None:
    labels = {"team": "support", "tether.dev/agent-version": "v2"}
    assert stratum(labels, ["team", "tether.dev/agent-version"]) == stratum(
        labels, ["tether.dev/agent-version", "team", "team"])
    assert stratum(labels, ["tether.dev/agent-version", "team"]) == (
        "team=support,tether.dev/agent-version=v2")
    assert stratum(labels, ["tier"]) == f"tier={NO_LABEL}"
    assert stratum({"tier": ""}, ["tier"]) == "tier="  # an empty value is not a missing label
    assert stratum(labels, []) == ""
