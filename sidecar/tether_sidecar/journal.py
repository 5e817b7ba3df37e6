"""The call journal: what this task has already done, on the state dir, across restarts.

An append-only JSON-lines file. Every model or tool call writes ``begin`` before it leaves the pod
and ``end`` (with the response and its cost) when it completes, or ``abort`` when it fails for
good. On start-up the journal is replayed to rebuild the spend ledger, and a call that was in
flight when the last process died becomes an ``orphan``: a model call is charged what was held
for it (we cannot know what the provider billed, so we count the worst case), and a side-effecting
tool call is remembered as "may have run".

One journal call per hold. A model call whose attempt may have been billed (``spend.billable``)
and is then retried closes that attempt's call with an ``abort`` record that carries its hold
as ``usd`` and ``"retried": true`` (:meth:`Journal.lost`), and the retry begins under a fresh
call id, same key and occurrence, with its own ``hold``. Replay adds every ``usd`` it reads, so
a restart recovers each lost attempt's charge once, and a retry in flight at the kill becomes
an orphan charged its own hold. Readers that know only ``begin``/``end``/``abort``/``orphan``
(an older sidecar, the crash test) read the record as an abort and count it the same.

Replay: a restarted agent resumes from its checkpoint and repeats the calls it made after it.
Calls are identified by a key (kind, target and canonical body: see ``call_key``) and their
occurrence: the n-th call with key K since the task began. The agent's ``GET /checkpoint`` sets
the cursor to the journal position of the checkpoint it resumes from, so occurrences are counted
from there; the n-th occurrence of K that already ended is answered from the journal, not sent
and not charged.

Durability: each record is written with one ``write`` (it survives the process being killed);
``sync()`` adds ``fdatasync`` (it survives the node), done before a side-effecting call leaves,
before a checkpoint is written, on graceful stop, and at most a second after any other record.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from blake3 import blake3

from .errors import JournalWriteFailed, StartupError

__all__ = ["Journal", "Recovered", "call_key"]

log = logging.getLogger(__name__)
_MAX_STORED_BODY = 1024 * 1024  # larger responses are journalled without a body: not replayable


def call_key(kind: str, target: str, body: Any) -> str:
    """The identity a call is replayed by: a hash of its kind, target and body.

    A parsed body (model calls) is hashed in canonical form (orjson, keys sorted), so a restarted
    agent whose SDK writes the same request with its keys in another order, or other spacing, is
    still answered from the journal; any difference in a value is a different call. It is hashed
    with BLAKE3: as collision-resistant as SHA-256 (a replay must never answer a different
    request) and ~4x cheaper, which every model call pays over its whole prompt (12 against
    47 µs at 100 KB here, docs/benchmarks.md). Model calls journalled before 2026-11-30 have
    SHA-256 keys, so a task resumed across that upgrade sends them again (and pays again).

    Raw bytes (tool calls) are hashed as given, still with SHA-256: a completed side-effecting
    call in a journal written before must keep replaying rather than run twice, and tool bodies
    are small.
    """
    prefix = f"{kind}\0{target}\0".encode()
    if isinstance(body, bytes):
        return hashlib.sha256(prefix + body).hexdigest()
    digest = blake3(prefix)
    digest.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))  # not concatenated: a copy
    return digest.hexdigest()


@dataclass
class Recovered:
    spent_usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    orphans: int = 0
    orphan_usd: Decimal = Decimal(0)
    # (call id, what it costs on its span): a model call in flight at a kill never wrote its
    # span, so the attempt that charges it writes one (Tracing.orphan). Its cost is the hold
    # charged now plus what its lost attempts were charged before the kill ("lost" in begin).
    orphan_calls: list[tuple[str, Decimal]] = field(default_factory=list)
    checkpoint_spent: Decimal = Decimal(0)  # spent when the last checkpoint was journalled


@dataclass
class _Call:
    seq: int
    key: str
    kind: str
    occ: int  # which occurrence of ``key`` this call was (a re-execution shares it)
    ended: dict[str, Any] | None = None


@dataclass
class Journal:
    path: Path
    seq: int = 0
    cursor: int = 0
    _fd: int = -1
    _dirty: bool = False
    _calls: dict[str, _Call] = field(default_factory=dict)  # id -> call, from earlier attempts
    _by_key: dict[str, list[_Call]] = field(default_factory=lambda: defaultdict(list))
    _seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _live_calls: int = 0

    def open(self) -> Recovered:
        """Read what earlier attempts wrote, mend a torn tail, and open for appending."""
        rec = Recovered()
        pending: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            good = data.rfind(b"\n") + 1
            if good < len(data):
                log.warning("Journal %s ends in a torn record (%d bytes); dropped it", self.path,
                            len(data) - good)
                with self.path.open("r+b") as f:
                    f.truncate(good)
            for number, line in enumerate(data[:good].splitlines(), 1):
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise StartupError(
                        f"journal {self.path} line {number} is corrupt ({exc}); the spend ledger "
                        "cannot be trusted. Move the file aside to start without history."
                    ) from exc
                self._apply(doc, rec, pending)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for call_id, begin in pending.items():
            hold = Decimal(begin.get("hold", "0"))
            rec.orphans += 1
            rec.orphan_usd += hold
            if begin.get("kind") == "llm":
                rec.orphan_calls.append((call_id, hold + Decimal(begin.get("lost", "0"))))
            rec.spent_usd += hold
            self.append({"t": "orphan", "id": call_id, "usd": format(hold, "f")})
        self.sync()
        return rec

    def _apply(self, doc: dict[str, Any], rec: Recovered, pending: dict[str, dict[str, Any]]
               ) -> None:
        self.seq = max(self.seq, int(doc.get("seq", 0)))
        kind = doc.get("t")
        if kind == "begin":
            call = _Call(doc["seq"], doc["key"], doc["kind"], int(doc.get("occ", 0)))
            self._calls[doc["id"]] = call
            self._by_key[doc["key"]].append(call)
            pending[doc["id"]] = doc
        elif kind == "checkpoint":  # a step's cost is what was charged after it (tracing.py)
            rec.checkpoint_spent = rec.spent_usd
        elif kind in ("end", "abort", "orphan"):
            begin = pending.pop(doc["id"], None)
            known = self._calls.get(doc["id"])
            if kind == "end" and known is not None:
                known.ended = doc
            if begin is None:
                log.warning("Journal %s: %s record for unknown call %s", self.path, kind,
                            doc["id"])
            if doc.get("usd") is not None:
                rec.spent_usd += Decimal(doc["usd"])
            rec.input_tokens += int(doc.get("in", 0))
            rec.output_tokens += int(doc.get("out", 0))

    def append(self, doc: dict[str, Any]) -> int:
        doc["seq"] = self.seq + 1
        line = orjson.dumps(doc) + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise JournalWriteFailed(f"cannot write the call journal {self.path}: "
                                     f"{exc.strerror}", errno=exc.errno) from exc
        if written != len(line):  # a short write is a torn record: mend and refuse
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
            raise JournalWriteFailed(f"short write to the call journal {self.path} (volume full?)")
        self.seq += 1
        self._dirty = True
        return self.seq

    def sync(self) -> None:
        """fdatasync what was written since the last sync. The periodic flush calls it from a
        worker thread, so calls never wait on the disk: the flag is cleared first, so a record
        appended meanwhile is synced next time rather than forgotten."""
        if self._dirty and self._fd >= 0:
            self._dirty = False
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._dirty = True
                raise JournalWriteFailed(f"cannot sync the call journal {self.path}: "
                                         f"{exc.strerror}", errno=exc.errno) from exc

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    # --- replay -------------------------------------------------------------------------

    def resume_from(self, journal_seq: int) -> None:
        """The agent resumes from a checkpoint taken at ``journal_seq``; count from there.
        Ignored once this process has made calls (a late GET must not rewind)."""
        if self._live_calls == 0:
            self.cursor = journal_seq

    def occurrence(self, key: str) -> int:
        """Claim the occurrence number of ``key`` for a new call (1-based): the occurrences
        recorded up to the resume point, plus the calls made with it since."""
        self._live_calls += 1
        if key not in self._seen:
            self._seen[key] = max((c.occ for c in self._by_key.get(key, ())
                                   if c.seq <= self.cursor), default=0)
        self._seen[key] += 1
        return self._seen[key]

    def earlier(self, key: str, occurrence: int) -> tuple[str, dict[str, Any] | None] | None:
        """What earlier attempts did for this occurrence of this call: ("ended", end record) to
        replay, ("in_flight", None) when it was sent and never finished (or failed), or None
        when it was never sent. A call re-executed after a crash has several records for one
        occurrence; any that completed answers it."""
        matches = [c for c in self._by_key.get(key, ()) if c.occ == occurrence]
        for call in matches:
            if call.ended is not None and call.ended.get("replayable", True):
                return "ended", call.ended
        return ("in_flight", None) if matches else None

    def begin(self, call_id: str, kind: str, key: str, occurrence: int,
              hold: Decimal | None = None, side_effects: bool = False,
              lost: Decimal | None = None) -> None:
        """``lost``: what the call's earlier attempts were charged (a retry's new hold)."""
        doc: dict[str, Any] = {"t": "begin", "id": call_id, "kind": kind, "key": key,
                               "occ": occurrence}
        if hold is not None:
            doc["hold"] = format(hold, "f")
        if lost:
            doc["lost"] = format(lost, "f")
        self.append(doc)
        if side_effects:
            self.sync()  # the record must outlive the node before the effect can happen

    def end(self, call_id: str, key: str, *, status: int, headers: Mapping[str, str], body: bytes,
            usd: Decimal | None = None, input_tokens: int = 0, output_tokens: int = 0) -> None:
        doc: dict[str, Any] = {"t": "end", "id": call_id, "key": key, "status": status,
                               "ctype": headers.get("content-type", "")}
        if usd is not None:
            doc.update(usd=format(usd, "f"), **{"in": input_tokens, "out": output_tokens})
        if len(body) > _MAX_STORED_BODY:
            doc["replayable"] = False
        else:
            try:
                doc["text"] = body.decode("utf-8")
            except UnicodeDecodeError:
                doc["b64"] = base64.b64encode(body).decode()
        self.append(doc)

    def lost(self, call_id: str, reason: str, usd: Decimal) -> None:
        """Close a model call's attempt that may have been billed and is retried under a new
        call id: charged ``usd`` (its hold) for good."""
        self.append({"t": "abort", "id": call_id, "reason": f"retried: {reason}"[:300],
                     "usd": format(usd, "f"), "retried": True})

    def abort(self, call_id: str, reason: str, usd: Decimal | None = None) -> None:
        doc: dict[str, Any] = {"t": "abort", "id": call_id, "reason": reason[:300]}
        if usd is not None:
            doc["usd"] = format(usd, "f")
        self.append(doc)


def stored_body(end: dict[str, Any]) -> bytes:
    if "text" in end:
        return str(end["text"]).encode("utf-8")
    return base64.b64decode(end.get("b64", ""))
