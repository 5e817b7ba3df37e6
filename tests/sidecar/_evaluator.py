"""The evaluator's stand-in for the sidecar's tests: ``POST /v1/records`` on a real aiohttp server.

It keeps what it receives the way the evaluator's contract says (docs/evaluation.md): stored once
per ``(uid, attempt)``, 201 for a new record and 200 for one it has; every POST is kept too, with
its headers (names lower-cased), so a test sees each delivery. ``answers`` scripts the next
responses: an int is that status without storing; ``"lose_ack"`` stores the record and answers
503, an acknowledgement lost on the way back. A record the evaluator's own model
(``tether_eval.record.Record``) refuses is answered 400 with the reason, as the evaluator does:
the two ends of the contract are checked against each other in every test that delivers one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from tether_eval.record import Record


class EvaluatorDouble:
    def __init__(self) -> None:
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int | str] = []
        self._changed = threading.Condition()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/records", self._post)
        return app

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._changed:
            self.posts.append(({k.lower(): v for k, v in request.headers.items()}, body))
            answer = self.answers.pop(0) if self.answers else None
            if isinstance(answer, int):
                self._changed.notify_all()
                return web.json_response({"error": f"scripted {answer}"}, status=answer)
            try:
                Record.model_validate_json(body)
            except ValidationError as exc:
                self._changed.notify_all()
                return web.json_response({"error": str(exc)}, status=400)
            record = json.loads(body)
            key = (record["uid"], record["attempt"])
            status = 200 if key in self.records else 201
            self.records.setdefault(key, record)
            self._changed.notify_all()
        if answer == "lose_ack":
            return web.json_response({"error": "scripted: stored, answer lost"}, status=503)
        return web.json_response({"stored": True}, status=status)

    def wait(self, pred: Callable[[EvaluatorDouble], bool], timeout: float = 20.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: pred(self), timeout):
                raise AssertionError(f"evaluator: condition not met in {timeout}s; "
                                     f"{len(self.posts)} post(s), records {list(self.records)}")

    def only_record(self) -> dict[str, Any]:
        assert len(self.records) == 1, list(self.records)
        return next(iter(self.records.values()))
