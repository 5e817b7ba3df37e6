"""The two databases behind :mod:`store`: one schema, one set of queries, two connections.

SQLite (the default, a file on the evaluator's volume) through the standard library's
``sqlite3``; PostgreSQL (when a URL is given) through psycopg 3. Both run on one dedicated thread
per store, so the event loop never waits on disk or network and the single connection needs no
locking (docs/evaluation.md, "Storage", says why not an async driver).

The SQL is written once, with ``?`` placeholders (rewritten to psycopg's ``%s``) and only what
both speak: ``INSERT … ON CONFLICT … DO NOTHING / DO UPDATE``, ``RETURNING``, ``DOUBLE
PRECISION``. Money is TEXT holding a decimal string, added up in Python with ``Decimal`` (SQLite
has no exact decimal type). Every transaction commits durably: SQLite in WAL mode with
``synchronous=FULL`` (the WAL is fsync'd at each commit), PostgreSQL with its default
``synchronous_commit=on``.

Schema versions: ``MIGRATIONS[i]`` takes the schema from version i to i+1; opening a store
applies the missing ones in order, each in its own transaction (DDL is transactional in both),
and records the version reached in ``schema_version``. A migration is never edited once
released: a change is a new entry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = ["MIGRATIONS", "Backend", "Tx", "connect", "migrate"]

T = TypeVar("T")
Row = tuple[Any, ...]

MIGRATIONS: list[list[str]] = [[
    """CREATE TABLE records (
        uid TEXT NOT NULL, attempt INTEGER NOT NULL, namespace TEXT NOT NULL,
        task TEXT NOT NULL, outcome TEXT NOT NULL, redaction_ok INTEGER NOT NULL,
        stratum TEXT NOT NULL, body TEXT NOT NULL, received_at TEXT NOT NULL,
        PRIMARY KEY (uid, attempt))""",
    # Which policies each record names (the policy status' record count).
    """CREATE TABLE record_policies (
        uid TEXT NOT NULL, attempt INTEGER NOT NULL, policy TEXT NOT NULL,
        redaction_ok INTEGER NOT NULL, PRIMARY KEY (uid, attempt, policy))""",
    # The latest attempt of each task: its record is the one that counts.
    "CREATE TABLE tasks (uid TEXT PRIMARY KEY, attempt INTEGER NOT NULL)",
    # One row per (record, policy) to judge; a lease lets a restarted evaluator take it over.
    """CREATE TABLE queue (
        uid TEXT NOT NULL, attempt INTEGER NOT NULL, policy TEXT NOT NULL,
        state TEXT NOT NULL, why TEXT NOT NULL, lease_owner TEXT, lease_until DOUBLE PRECISION,
        PRIMARY KEY (uid, attempt, policy))""",
    "CREATE INDEX queue_pending ON queue (state, lease_until)",
    # The judge journal: written before a call leaves and when its answer is back, so a
    # restart uses an answer it already paid for and charges a call lost in flight.
    """CREATE TABLE judge_calls (
        uid TEXT NOT NULL, attempt INTEGER NOT NULL, policy TEXT NOT NULL,
        sample INTEGER NOT NULL, state TEXT NOT NULL, answer TEXT, hold TEXT NOT NULL,
        sends INTEGER NOT NULL, PRIMARY KEY (uid, attempt, policy, sample))""",
    """CREATE TABLE verdicts (
        uid TEXT NOT NULL, attempt INTEGER NOT NULL, policy TEXT NOT NULL,
        namespace TEXT NOT NULL, stratum TEXT NOT NULL, verdict TEXT NOT NULL,
        score DOUBLE PRECISION, reason TEXT NOT NULL, rubric_hash TEXT NOT NULL,
        judge TEXT NOT NULL, why TEXT NOT NULL, judged_at TEXT NOT NULL,
        PRIMARY KEY (uid, attempt, policy))""",
    "CREATE INDEX verdicts_policy ON verdicts (policy, stratum)",
    """CREATE TABLE detectors (
        policy TEXT PRIMARY KEY, state TEXT NOT NULL, alarms INTEGER NOT NULL)""",
    """CREATE TABLE judge_spend (
        judge TEXT NOT NULL, day TEXT NOT NULL, usd TEXT NOT NULL, PRIMARY KEY (judge, day))""",
    """CREATE TABLE anchor_runs (
        policy TEXT NOT NULL, run_at TEXT NOT NULL, pass_rate DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (policy, run_at))""",
], [
    # 2: the column holds the record's labels (JSON), not a stratum: named for what it holds.
    "ALTER TABLE records RENAME COLUMN stratum TO labels",
    # A task is judged once it is terminal: its AgentTask's final phase (from the cluster),
    # or, without a cluster, terminal when its record arrives. Rows of version 1 were judged
    # on arrival: they stay judgeable.
    "ALTER TABLE tasks ADD COLUMN phase TEXT",
    "ALTER TABLE tasks ADD COLUMN terminal INTEGER NOT NULL DEFAULT 0",
    "UPDATE tasks SET terminal = 1",
    "ALTER TABLE verdicts ADD COLUMN phase TEXT",
    # Each anchor run's counts: the attribution's two-proportion test needs them, not a rate.
    "ALTER TABLE anchor_runs ADD COLUMN passes INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE anchor_runs ADD COLUMN n INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE anchor_runs ADD COLUMN agreed INTEGER NOT NULL DEFAULT 0",
]]


class Tx(Protocol):
    for_update: str  # " FOR UPDATE" on PostgreSQL: a read that the same transaction rewrites

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def count(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Backend(Protocol):
    kind: str

    def transaction(self, fn: Callable[[Tx], T]) -> T: ...
    def close(self) -> None: ...


class _SqliteTx:
    for_update = ""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount


class _Sqlite:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE takes the write lock
        # up front, so a read-then-write in one transaction never meets SQLITE_BUSY midway).
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")

    def transaction(self, fn: Callable[[Tx], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(_SqliteTx(self._conn))
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return out

    def close(self) -> None:
        self._conn.close()


class _PgTx:
    for_update = " FOR UPDATE"

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(sql.replace("?", "%s"), tuple(params))
        return list(self._cur.fetchall()) if self._cur.description is not None else []

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(sql.replace("?", "%s"), tuple(params))
        return int(self._cur.rowcount)


class _Postgres:
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg  # only with a PostgreSQL URL: the SQLite store needs no driver

        self._conn = psycopg.connect(url, autocommit=False)

    def transaction(self, fn: Callable[[Tx], T]) -> T:
        with self._conn.transaction(), self._conn.cursor() as cur:
            return fn(_PgTx(cur))

    def close(self) -> None:
        self._conn.close()


def connect(url: str) -> Backend:
    """``sqlite:///path/to/file.db`` (or a bare path) or ``postgresql://…``."""
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    path = url.removeprefix("sqlite://") if url.startswith("sqlite://") else url
    return _Sqlite(Path(path))


def migrate(backend: Backend) -> int:
    """Bring the schema to the newest version; returns it."""
    def current(tx: Tx) -> int:
        tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = tx.run("SELECT version FROM schema_version")
        if not rows:
            tx.run("INSERT INTO schema_version (version) VALUES (0)")
            return 0
        return int(rows[0][0])

    version = backend.transaction(current)
    for target in range(version + 1, len(MIGRATIONS) + 1):
        def step(tx: Tx, target: int = target) -> None:
            for ddl in MIGRATIONS[target - 1]:
                tx.run(ddl)
            tx.run("UPDATE schema_version SET version = ?", (target,))
        backend.transaction(step)
    return len(MIGRATIONS)
