"""``PUT /result``: the agent's final answer, stored once on the state volume.

The body is ``{"answer": <any JSON>}``. The first answer is stored durably (a temp file, fsync,
rename, the directory fsynced: whole or absent, like a checkpoint), so a restarted sidecar knows
the task answered; 201. The same answer again is 200 (an agent repeating a request whose response
it lost); a different one is 409 ``result_conflict``: the answer is final, and the evaluation
record built from it may have left already. Answers compare as canonical JSON (sorted keys).

With ``TETHER_EVALUATION`` set, a stored answer is handed to the evaluation (eval_outbox.py),
which builds the task's record and queues it for the evaluator; without it nothing more happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from .checkpoints import write_durably
from .errors import BadRequest, ResultConflict, StorageFailed

__all__ = ["Result", "ResultApi", "load_result"]

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Result:
    answer: Any
    sha256: str  # of the canonical JSON of the answer
    attempt: int  # the attempt that gave it
    time: float


def _canonical(answer: Any) -> bytes:
    return orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)



def load_result(state_dir: Path) -> Result | None:
    """The answer an earlier process of this task stored, if any."""
    path = state_dir / RESULT_FILE
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        # Written atomically, so only outside damage gets here: say so, and take a new answer.
        log.error("Stored result %s is unreadable (%s); a new PUT /result will replace it",
                  path, exc)
        return None
    answer = doc["answer"]
    return Result(answer, hashlib.sha256(_canonical(answer)).hexdigest(), int(doc["attempt"]),
                  float(doc["time"]))


class ResultApi:
    def __init__(self, state_dir: Path, attempt: int,
                 on_answer: Callable[[Result], Awaitable[None]] | None = None) -> None:
        self.path = state_dir / RESULT_FILE
        self.attempt = attempt
        self.result = load_result(state_dir)
        self.on_answer = on_answer
        self._lock = asyncio.Lock()

    async def put(self, request: web.Request) -> web.Response:
        try:
            doc: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"result is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or set(doc) != {"answer"}:
            got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise BadRequest(f'result must be a JSON object {{"answer": ...}}, got {got}')
        answer = doc["answer"]
        digest = hashlib.sha256(_canonical(answer)).hexdigest()
        async with self._lock:
            stored, status = self.result, 200
            if stored is None:
                stored = Result(answer, digest, self.attempt, time.time())
                await asyncio.to_thread(self._store, stored)
                self.result, status = stored, 201
            elif stored.sha256 != digest:
                raise ResultConflict(
                    f"a different answer was stored already (attempt {stored.attempt}, sha256 "
                    f"{stored.sha256}); the answer is final", attempt=stored.attempt,
                    sha256=stored.sha256)
            if self.on_answer is not None:  # again on a repeat: it finishes what failed before
                await self.on_answer(stored)
        return web.json_response({"attempt": stored.attempt, "sha256": stored.sha256},
                                 status=status)

    def _store(self, result: Result) -> None:
        data = orjson.dumps({"answer": result.answer, "attempt": result.attempt,
                             "time": result.time})
        try:
            write_durably(self.path, data)
        except OSError as exc:
            raise StorageFailed(f"cannot store the result in {self.path}: {exc.strerror}; the "
                                "answer is not saved, send it again", errno=exc.errno) from exc
