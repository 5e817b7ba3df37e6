"""The checkpoint store: whole generations, torn files detected at every byte, old ones pruned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether_sidecar.checkpoints import CheckpointStore
from tether_sidecar.errors import CheckpointCorrupt, StorageTooLarge


def store(tmp_path: Path, keep: int = 3, max_bytes: int = 1 << 20) -> CheckpointStore:
    return CheckpointStore(tmp_path / "ckpt", keep, max_bytes)


def test_fresh_start_has_no_checkpoint(tmp_path: Path) -> None:
    assert store(tmp_path).latest() is None


def test_latest_generation_wins_and_old_ones_are_pruned(tmp_path: Path) -> None:
    s = store(tmp_path, keep=2)
    for step in range(1, 5):
        s.write(step, {"n": step}, journal_seq=step * 10)
    latest = s.latest()
    assert latest is not None and (latest.step, latest.state, latest.journal_seq) == (4, {"n": 4},
                                                                                      40)
    assert s.generations() == [4, 3]


def test_a_torn_last_write_at_every_byte_offset_falls_back(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write(1, {"messages": ["first"]}, 1)
    s.write(2, {"messages": ["second", "x" * 300]}, 2)
    newest = s.dir / "ckpt-0000000002.json"
    whole = newest.read_bytes()
    for cut in range(len(whole)):
        newest.write_bytes(whole[:cut])
        got = s.latest()
        assert got is not None and got.step == 1, f"cut at byte {cut}"
    assert s.corrupt_seen == len(whole)
    newest.write_bytes(whole)
    assert s.latest().step == 2  # type: ignore[union-attr]


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write(1, {"a": 1}, 1)
    s.write(2, {"a": 2}, 2)
    path = s.dir / "ckpt-0000000002.json"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    assert s.latest().step == 1  # type: ignore[union-attr]


def test_every_generation_damaged_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write(1, {}, 1)
    (s.dir / "ckpt-0000000001.json").write_bytes(b"TETHER-CKPT 1 garbage")
    with pytest.raises(CheckpointCorrupt, match="all 1 checkpoint generations"):
        s.latest()


def test_too_large_is_refused_and_nothing_written(tmp_path: Path) -> None:
    s = store(tmp_path, max_bytes=1024)
    with pytest.raises(StorageTooLarge, match="maxBytes"):
        s.write(1, {"blob": "x" * 2000}, 1)
    assert s.generations() == [] and not [p for p in s.dir.iterdir()]


def test_no_temp_files_are_left_behind(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write(1, {"a": 1}, 1)
    assert sorted(os.listdir(s.dir)) == ["ckpt-0000000001.json"]
