"""The journal: spend survives restarts, in-flight calls become orphans, replays match by
key and occurrence from the resume point, a torn tail is mended, a corrupt middle refused."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from tether_sidecar.errors import StartupError
from tether_sidecar.journal import Journal, call_key


def reopen(path: Path) -> tuple[Journal, Decimal]:
    j = Journal(path)
    rec = j.open()
    return j, rec.spent_usd


def test_spend_and_orphans_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.open()
    j.begin("a", "llm", "K1", 1, hold=Decimal("0.10"))
    j.end("a", "K1", status=200, headers={}, body=b"{}", usd=Decimal("0.07"), input_tokens=5,
          output_tokens=7)
    j.begin("b", "llm", "K2", 1, hold=Decimal("0.10"))  # the process dies here
    j2 = Journal(path)
    rec = j2.open()
    assert rec.spent_usd == Decimal("0.17") and rec.orphans == 1
    assert (rec.input_tokens, rec.output_tokens) == (5, 7)
    j2.close()
    _, spent = reopen(path)  # the orphan is charged once, not again on every start
    assert spent == Decimal("0.17")


def test_replay_counts_occurrences_from_the_resume_point(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.open()
    key = call_key("tool", "search", b'{"q": 1}')
    for n, body in enumerate([b"one", b"two", b"three"]):
        j.begin(f"c{n}", "tool", key, n + 1)
        j.end(f"c{n}", key, status=200, headers={}, body=body)
        if n == 0:
            resume_at = j.seq  # a checkpoint taken after the first call
    j.close()
    j2 = Journal(path)
    j2.open()
    j2.resume_from(resume_at)
    first = j2.earlier(key, j2.occurrence(key))
    second = j2.earlier(key, j2.occurrence(key))
    third = j2.earlier(key, j2.occurrence(key))
    assert first is not None and first[1] is not None and first[1]["text"] == "two"
    assert second is not None and second[1] is not None and second[1]["text"] == "three"
    assert third is None  # never made: goes live


def test_a_call_re_executed_after_a_crash_is_still_one_occurrence(tmp_path: Path) -> None:
    """Found by the crash test: killed mid-call, re-executed and completed in the next
    attempt, killed again before the checkpoint; the third attempt must replay it."""
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.open()
    j.begin("a1", "llm", "K", 1, hold=Decimal("0.10"))  # attempt 1 dies here
    j2 = Journal(path)
    j2.open()
    j2.resume_from(0)
    occ = j2.occurrence("K")
    assert j2.earlier("K", occ) == ("in_flight", None)
    j2.begin("a2", "llm", "K", occ, hold=Decimal("0.10"))
    j2.end("a2", "K", status=200, headers={}, body=b"answer", usd=Decimal("0.07"))
    j3 = Journal(path)  # attempt 2 died before its checkpoint
    j3.open()
    j3.resume_from(0)
    got = j3.earlier("K", j3.occurrence("K"))
    assert got is not None and got[1] is not None and got[1]["text"] == "answer"


def test_call_in_flight_at_the_crash_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.open()
    j.begin("x", "tool", "K", 1, side_effects=True)
    j2 = Journal(path)
    j2.open()
    assert j2.earlier("K", j2.occurrence("K")) == ("in_flight", None)


def test_torn_tail_is_dropped_and_corrupt_middle_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.open()
    j.begin("a", "llm", "K", 1, hold=Decimal("0.01"))
    j.close()
    with path.open("ab") as f:
        f.write(b'{"t": "end", "id": "a", "us')  # killed mid-write
    j2 = Journal(path)
    assert j2.open().orphans == 1
    assert path.read_bytes().endswith(b"\n")
    j2.close()
    text = path.read_bytes().splitlines()
    path.write_bytes(text[0] + b"\n{not json\n" + b"\n".join(text[1:]) + b"\n")
    with pytest.raises(StartupError, match="line 2 is corrupt"):
        Journal(path).open()


def test_call_key_is_canonical_for_parsed_bodies_and_exact_for_raw_ones() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "x"}], "n": 1}
    b = {"n": 1, "messages": [{"name": "x", "content": "hi", "role": "user"}], "model": "m"}
    assert call_key("llm", "/chat", a) == call_key("llm", "/chat", b)
    assert call_key("llm", "/chat", a) != call_key("llm", "/chat", {**a, "n": 2})
    assert call_key("llm", "/chat", a) != call_key("llm", "/other", a)
    assert call_key("llm", "/chat", a) != call_key("tool", "/chat", a)
    assert call_key("tool", "t", b'{"q":1,"r":2}') != call_key("tool", "t", b'{"r":2,"q":1}')
    # Tool keys are what journals written before BLAKE3 hold: their completed calls replay.
    assert call_key("tool", "t", b"{}") == hashlib.sha256(b"tool\0t\0{}").hexdigest()


def test_an_attempt_lost_and_retried_is_charged_again_after_a_restart(tmp_path: Path) -> None:
    """A reset attempt is closed with its hold and retried under a new call id: a restart
    counts that charge once, plus the retry's (an orphan, charged its hold; or its usage)."""
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.open()
    j.begin("a", "llm", "K", 1, hold=Decimal("0.10"))
    j.lost("a", "connection reset", Decimal("0.10"))
    j.begin("b", "llm", "K", 1, hold=Decimal("0.10"))  # the retry; the process dies here
    j2 = Journal(path)
    rec = j2.open()
    assert (rec.spent_usd, rec.orphans, rec.orphan_usd) == (Decimal("0.20"), 1, Decimal("0.10"))
    assert j2.earlier("K", j2.occurrence("K")) == ("in_flight", None)  # not replayable
    j2.close()
    assert reopen(path)[1] == Decimal("0.20")  # each charged once, not again on every start

    done = tmp_path / "done.jsonl"
    j3 = Journal(done)
    j3.open()
    for n in range(2):  # reset, reset, then success
        j3.begin(f"a{n}", "llm", "K", 1, hold=Decimal("0.10"))
        j3.lost(f"a{n}", "connection reset", Decimal("0.10"))
    j3.begin("ok", "llm", "K", 1, hold=Decimal("0.10"))
    j3.end("ok", "K", status=200, headers={}, body=b"answer", usd=Decimal("0.03"),
           input_tokens=5, output_tokens=3)
    j3.close()
    j4, spent = reopen(done)
    assert spent == Decimal("0.23")
    got = j4.earlier("K", j4.occurrence("K"))  # the successful retry answers the occurrence
    assert got is not None and got[1] is not None and got[1]["text"] == "answer"
