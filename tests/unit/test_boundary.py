"""The boundary store on a real directory: what is archived, numbered and read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether_sidecar.boundary import BoundaryStore


def msgs(start: int, end: int) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": f"c{i}", "content": f"page {i}"}
            for i in range(start, end)]


def write(store: BoundaryStore, archived: list[dict[str, Any]], n: int) -> int:
    return store.write(messages=[{"role": "user", "content": f"compact {n}"}], archived=archived,
                       summary=f"summary {n}", covered=len(archived), digest_=f"d{n}",
                       call_key=f"k{n}").n


def test_a_resent_history_is_not_archived_twice_and_notes_never(tmp_path: Path) -> None:
    store = BoundaryStore(tmp_path)
    write(store, msgs(0, 5), 1)
    note = {"role": "user", "content": "[tether: summary of 5 earlier messages]\nS"}
    write(store, msgs(0, 8), 2)  # an agent that keeps its whole history resends 0..4
    write(store, [note, *msgs(8, 10)], 3)  # one that continues from the compact form
    assert [e["message"]["content"] for e in store.archive] == [f"page {i}" for i in range(10)]
    assert [e["n"] for e in store.archive] == list(range(1, 11))
    again = BoundaryStore(tmp_path)  # a restarted sidecar reads the same back
    assert again.archive == store.archive
    assert again.summaries() == {(5, "d1"): "summary 1", (8, "d2"): "summary 2",
                                 (3, "d3"): "summary 3"}
    assert again.by_call_key("k2") is not None and again.latest().n == 3  # type: ignore[union-attr]


def test_damaged_files_are_skipped_and_never_overwritten(tmp_path: Path) -> None:
    store = BoundaryStore(tmp_path)
    write(store, msgs(0, 3), 1)
    write(store, msgs(3, 6), 2)
    write(store, msgs(6, 9), 3)
    (tmp_path / "archive-0000000003.json").write_bytes(b"TETHER-CKPT 1 nonsense")
    (tmp_path / "boundary-0000000002.json").write_bytes(b"")
    again = BoundaryStore(tmp_path)
    assert again.corrupt_seen == 2
    assert again.by_call_key("k2") is None and again.latest().n == 3  # type: ignore[union-attr]
    # The damaged archive's entries (7-9) are lost, not invented, and their numbers (which
    # boundary 3 names) are not given to other messages.
    assert [e["n"] for e in again.archive] == [1, 2, 3, 4, 5, 6]
    assert write(again, msgs(9, 10), 4) == 4  # a new number: the damaged files stay for a look
    assert again.archive[-1]["n"] == 10
    assert (tmp_path / "boundary-0000000002.json").read_bytes() == b""


def test_search_by_text_and_range(tmp_path: Path) -> None:
    store = BoundaryStore(tmp_path)
    write(store, msgs(0, 30), 1)
    assert [e["n"] for e in store.search("PAGE 1", None, None, 50)] == [2, *range(11, 21)]
    assert [e["n"] for e in store.search("page 1", 12, 14, 50)] == [12, 13, 14]
    assert len(store.search(None, None, None, 4)) == 4
