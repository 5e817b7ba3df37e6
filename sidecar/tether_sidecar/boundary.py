"""Context boundaries: what a compaction leaves on the state dir, so resuming does not undo it.

At a compaction the sidecar writes, under ``<state-dir>/context/``:

- ``archive-<n>.json``: the messages the compaction archived that no earlier archive holds,
  numbered across the task (entry ``first`` .. ``first + len - 1``); append-only, never rewritten.
- ``boundary-<n>.json``: the compact context (the messages that now stand for the history:
  permanent tier, summary note, working tier), the summary and the key it is cached under, and
  the key of the model call that compacted (so a replay of that call still reports it).

Both in the checkpoints' format (``checkpoints.encode``: a header with the payload's sha256 and
length), written to a temp file, fsynced and renamed, the archive first: a boundary never names
archive entries the volume lacks. A damaged file is logged, counted and skipped: the previous
boundary stands for the latest, and the summaries of every whole boundary are read back into the
context manager's cache on start-up, so a restarted sidecar does not pay for them again.

It does not decide when to compact (context.py) nor talk HTTP (context_api.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .checkpoints import decode, encode, write_atomic
from .context import Compaction, digest
from .dialects import Message

__all__ = ["ARCHIVE_TOOL", "Boundary", "BoundaryStore", "is_note", "record_boundary"]

log = logging.getLogger(__name__)
ARCHIVE_TOOL = "context_archive"  # the built-in tool that reads the archive back
_NAME = re.compile(r"^(boundary|archive)-(\d{10})\.json$")
NOTE_PREFIX = "[tether: "


def is_note(msg: Message) -> bool:
    """A note the sidecar wrote (a summary or a truncation notice): never archived itself."""
    content = msg.get("content")
    return isinstance(content, str) and content.startswith(NOTE_PREFIX)


@dataclass(frozen=True)
class Boundary:
    n: int
    time: float
    messages: list[Message]  # the compact context, as sent to the model
    summary: str | None  # None for the truncate strategy
    covered: int  # how many archivable messages the summary covers (its cache key with digest)
    digest: str
    call_key: str  # the journal key of the model call that compacted
    first: int  # archive entries first .. first + count - 1 were added at this boundary
    count: int
    size: int  # bytes of the boundary file

    def public(self, archived_total: int) -> dict[str, Any]:
        return {"boundary": self.n, "time": self.time, "messages": self.messages,
                "summary": self.summary, "archivedAdded": [self.first, self.count],
                "archivedTotal": archived_total, "bytes": self.size}


class BoundaryStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.corrupt_seen = 0
        self.boundaries: dict[int, Boundary] = {}
        self._by_call: dict[str, Boundary] = {}  # asked on every replayed model call
        self.archive: list[dict[str, Any]] = []  # {"n", "boundary", "message"} in order
        self._digests: list[str] = []
        self._last_number = 0
        self._lock = threading.Lock()  # writes run in threads; two calls may compact at once
        self._load()

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = path.read_bytes()
            return {**decode(data)[1], "_size": len(data)}
        except (OSError, ValueError, orjson.JSONDecodeError) as exc:
            self.corrupt_seen += 1
            log.error("Context file %s is damaged (%s); skipped: the previous boundary stands",
                      path, exc)
            return None

    def _load(self) -> None:
        found = sorted((m.group(2), m.group(1), p) for p in self.dir.iterdir()
                       if (m := _NAME.match(p.name)))
        for number, kind, path in found:
            self._last_number = max(self._last_number, int(number))
            doc = self._read(path)
            if doc is None:
                continue
            if kind == "archive":
                for i, msg in enumerate(doc["messages"]):
                    self._add_entry(int(doc["first"]) + i, int(doc["boundary"]), msg)
            else:
                b = Boundary(int(number), float(doc["time"]), doc["messages"], doc.get("summary"),
                             int(doc["covered"]), str(doc["digest"]), str(doc["callKey"]),
                             int(doc["first"]), int(doc["count"]), int(doc["_size"]))
                self._add(b)

    def _add(self, b: Boundary) -> None:
        self.boundaries[b.n] = b
        self._by_call[b.call_key] = b

    def _add_entry(self, n: int, boundary: int, msg: Message) -> None:
        self.archive.append({"n": n, "boundary": boundary, "message": msg})
        self._digests.append(digest(msg))

    def latest(self) -> Boundary | None:
        return self.boundaries[max(self.boundaries)] if self.boundaries else None

    def by_call_key(self, key: str) -> Boundary | None:
        return self._by_call.get(key)

    def summaries(self) -> dict[tuple[int, str], str]:
        """The summaries cache as the volume holds it: (covered, digest) -> summary."""
        return {(b.covered, b.digest): b.summary for b in self.boundaries.values()
                if b.summary is not None}

    def _new(self, archived: list[Message]) -> list[Message]:
        """The archived messages no archive entry holds yet. An agent that keeps its whole
        history resends what was archived before: the tier then starts with the archive's tail."""
        tier = [m for m in archived if not is_note(m)]
        sums = [digest(m) for m in tier]
        for k in range(min(len(sums), len(self._digests)), 0, -1):
            if self._digests[-k] == sums[0] and sums[:k] == self._digests[-k:]:
                return tier[k:]
        return tier

    def write(self, *, messages: list[Message], archived: list[Message], summary: str | None,
              covered: int, digest_: str, call_key: str) -> Boundary:
        """Archive what is new, then write the boundary; raises StorageFailed (507)."""
        with self._lock:
            return self._write(messages, archived, summary, covered, digest_, call_key)

    def _write(self, messages: list[Message], archived: list[Message], summary: str | None,
               covered: int, digest_: str, call_key: str) -> Boundary:
        n = self._last_number + 1
        new = self._new(archived)
        # Past every entry known, a damaged archive's too (its boundary names them): a number
        # is never given to two messages.
        first = 1 + max([self.archive[-1]["n"] if self.archive else 0,
                         *(b.first + b.count - 1 for b in self.boundaries.values())])
        if new:
            payload = orjson.dumps({"boundary": n, "first": first, "messages": new})
            write_atomic(self.dir, f"archive-{n:010d}.json", encode(payload), "context archive")
        now = time.time()
        doc = {"time": now, "messages": messages, "summary": summary, "covered": covered,
               "digest": digest_, "callKey": call_key, "first": first, "count": len(new)}
        data = encode(orjson.dumps(doc))
        write_atomic(self.dir, f"boundary-{n:010d}.json", data, "context boundary")
        self._last_number = n
        for i, msg in enumerate(new):
            self._add_entry(first + i, n, msg)
        b = Boundary(n, now, messages, summary, covered, digest_, call_key, first, len(new),
                     len(data))
        self._add(b)
        return b

    def search(self, query: str | None, start: int | None, end: int | None, limit: int
               ) -> list[dict[str, Any]]:
        """Archive entries numbered start..end (inclusive) whose text holds ``query`` (case
        ignored), at most ``limit``, oldest first."""
        needle = query.lower() if query else None
        out = []
        for entry in self.archive:
            if (start is not None and entry["n"] < start) or (end is not None and entry["n"] > end):
                continue
            if needle is not None and needle not in orjson.dumps(entry["message"]).decode().lower():
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out


async def record_boundary(store: BoundaryStore, compaction: Compaction, messages: list[Message],
                          key: str) -> Boundary:
    """Write the boundary a compaction made, off the event loop (it fsyncs)."""
    return await asyncio.to_thread(
        store.write, messages=messages, archived=list(compaction.archived),
        summary=compaction.summary, covered=compaction.key[0], digest_=compaction.key[1],
        call_key=key)
