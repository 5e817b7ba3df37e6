"""The checkpoint store: the agent's state, one generation per write, on the state dir (PVC).

File format (one file a generation, ``ckpt-<generation>.json``)::

    TETHER-CKPT 1 <sha256 of payload> <payload length>\\n<payload>

where the payload is JSON ``{"step", "time", "journalSeq", "state"}``. A write goes to a temp
file, is fsynced, renamed into place and the directory fsynced, so a generation is either whole
or absent; the header still lets a reader detect a file torn or damaged by anything else (a
half-copied volume, a bad disk), and fall back to the previous generation, loudly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import CheckpointCorrupt, StorageFailed, StorageTooLarge

__all__ = ["Checkpoint", "CheckpointStore", "decode", "encode", "write_atomic", "write_durably"]

log = logging.getLogger(__name__)
_MAGIC = b"TETHER-CKPT 1 "
_NAME = re.compile(r"^ckpt-(\d{10})\.json$")


@dataclass(frozen=True)
class Checkpoint:
    generation: int
    step: int
    time: float
    journal_seq: int
    sha256: str
    state: Any
    size: int

    def public(self) -> dict[str, Any]:
        return {"step": self.step, "time": self.time, "generation": self.generation,
                "sha256": self.sha256, "state": self.state}


def encode(payload: bytes) -> bytes:
    digest = hashlib.sha256(payload).hexdigest()
    return _MAGIC + f"{digest} {len(payload)}\n".encode() + payload


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    """Return (sha256, payload document); raise ValueError saying what is wrong."""
    head, sep, payload = data.partition(b"\n")
    if not sep or not head.startswith(_MAGIC):
        raise ValueError("no complete header")
    try:
        digest, length = head[len(_MAGIC):].decode().split(" ")
        size = int(length)
    except ValueError as exc:
        raise ValueError("malformed header") from exc
    if len(payload) != size:
        raise ValueError(f"payload is {len(payload)} bytes, header says {size}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ValueError("checksum mismatch")
    doc = orjson.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("payload is not an object")
    return digest, doc


def write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temp file, fsynced, renamed into place, the
    directory fsynced. Raises OSError (the temp file removed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(directory: Path, name: str, data: bytes, what: str) -> None:
    """``write_durably`` of ``directory/name``; raises StorageFailed naming ``what`` (the volume
    is full or failing)."""
    try:
        write_durably(directory / name, data)
    except OSError as exc:
        raise StorageFailed(
            f"cannot write {what} to {directory}: {exc.strerror}; the agent must not "
            "continue as if its state were saved", errno=exc.errno) from exc


class CheckpointStore:
    def __init__(self, directory: Path, keep: int, max_bytes: int) -> None:
        self.dir = directory
        self.keep = keep
        self.max_bytes = max_bytes
        self.corrupt_seen = 0
        directory.mkdir(parents=True, exist_ok=True)

    def generations(self) -> list[int]:
        found = (_NAME.match(p.name) for p in self.dir.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def latest(self) -> Checkpoint | None:
        """The newest valid generation; older ones are tried when newer ones are damaged.
        None on a fresh start; CheckpointCorrupt when every generation is damaged."""
        gens = self.generations()
        for gen in gens:
            path = self.dir / f"ckpt-{gen:010d}.json"
            try:
                data = path.read_bytes()
                digest, doc = decode(data)
            except (OSError, ValueError, orjson.JSONDecodeError) as exc:
                self.corrupt_seen += 1
                log.error("Checkpoint %s is damaged (%s); trying the previous generation",
                          path.name, exc)
                continue
            return Checkpoint(gen, int(doc["step"]), float(doc["time"]),
                              int(doc.get("journalSeq", 0)), digest, doc.get("state"), len(data))
        if gens:
            raise CheckpointCorrupt(
                f"all {len(gens)} checkpoint generations in {self.dir} are damaged; refusing to "
                "pretend this is a fresh start (see the sidecar log)", generations=gens)
        return None

    def write(self, step: int, state: Any, journal_seq: int) -> Checkpoint:
        payload = orjson.dumps({"step": step, "time": time.time(), "journalSeq": journal_seq,
                                "state": state})
        if len(payload) > self.max_bytes:
            raise StorageTooLarge(
                f"checkpoint of {len(payload)} bytes is over spec.checkpoint.maxBytes "
                f"({self.max_bytes}); store large artefacts elsewhere and checkpoint a reference",
                maxBytes=self.max_bytes, size=len(payload))
        gens = self.generations()
        gen = (gens[0] + 1) if gens else 1
        data = encode(payload)
        write_atomic(self.dir, f"ckpt-{gen:010d}.json", data, "checkpoint")
        for old in gens[self.keep - 1:]:
            (self.dir / f"ckpt-{old:010d}.json").unlink(missing_ok=True)
        digest = data[len(_MAGIC):len(_MAGIC) + 64].decode()
        return Checkpoint(gen, step, time.time(), journal_seq, digest, state, len(data))
