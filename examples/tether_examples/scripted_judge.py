"""A scripted judge: a TEST DOUBLE for an LLM judge behind an OpenAI-compatible endpoint. It runs
no model and reads nothing the way a judge would.

It answers ``POST /v1/chat/completions`` with a verdict ``{"pass", "score", "reason"}`` decided by
dice, not by reading the answer: the truth of a sample is the marker ``TRUTH:PASS`` or
``TRUTH:FAIL`` in the request's text when there is one (the test planted it in the task's
answer), else drawn at the configured true pass rate — ``pass_rate`` for the first
``change_after`` calls, ``pass_rate_after`` from then on (a planted drop). The verdict then agrees
with the truth with probability ``sensitivity`` (truth pass) or ``specificity`` (truth fail), as a
judge of that quality would; a fraction ``malformed`` of answers is not a verdict at all. Usage is
reported (input: ceil(request bytes / 4), output: ceil(reply bytes / 4)) so the caller can price
it. Seeded: one ``random.Random(seed)`` draws, in the order calls arrive.

It records every call: ``GET /_judge/calls`` gives ``{"count", "calls": [{"call": the
X-Tether-Judge-Call header or null, "body": the request text}]}``, for tests that count calls per
judgement or look for text that must never reach a judge. ``POST /_judge/reset`` with an optional
JSON body of settings (the fields of :class:`JudgeScript`) clears the log and reseeds.

CLI: ``tether-scripted-judge --port N [--pass-rate P --change-after N --pass-rate-after P
--sensitivity S --specificity S --malformed F --seed N]``; prints ``listening on URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

from ._serve import LOOPBACK, run_until_signalled

__all__ = ["JudgeScript", "ScriptedJudge", "main"]

CALL_HEADER = "X-Tether-Judge-Call"


@dataclass(frozen=True)
class JudgeScript:
    pass_rate: float = 0.85
    change_after: int | None = None
    pass_rate_after: float = 0.80
    sensitivity: float = 1.0
    specificity: float = 1.0
    malformed: float = 0.0
    output_tokens: int | None = None  # fixed output usage (default: from the reply's size)
    reason_suffix: str = ""  # appended to every reason: a judge quoting what it read
    delay: float = 0.0  # seconds before each answer (a judge's latency; calls stay in flight)
    seed: int = 0

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JudgeScript:
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown judge settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**doc)


class ScriptedJudge:
    def __init__(self, script: JudgeScript) -> None:
        self.reset(script)

    def reset(self, script: JudgeScript) -> None:
        self.script = script
        self.rng = random.Random(script.seed)
        self.calls: list[dict[str, Any]] = []

    def truth(self, text: str, index: int) -> bool:
        if "TRUTH:PASS" in text:
            return True
        if "TRUTH:FAIL" in text:
            return False
        s = self.script
        rate = s.pass_rate_after if s.change_after is not None and index >= s.change_after \
            else s.pass_rate
        return self.rng.random() < rate

    def reply(self, text: str) -> str:
        s = self.script
        truth = self.truth(text, len(self.calls) - 1)
        if self.rng.random() < s.malformed:
            return "I think this answer is fine."  # prose, not a verdict
        right = self.rng.random() < (s.sensitivity if truth else s.specificity)
        verdict = truth if right else not truth
        score = round(0.5 + 0.5 * self.rng.random(), 3) if verdict else \
            round(0.49 * self.rng.random(), 3)
        why = "The answer does what the task asked." if verdict else \
            "The answer misses what the task asked."
        return json.dumps({"pass": verdict, "score": score, "reason": why + s.reason_suffix})

    async def chat(self, request: web.Request) -> web.Response:
        raw = await request.read()
        text = raw.decode("utf-8", "replace")
        self.calls.append({"call": request.headers.get(CALL_HEADER), "body": text})
        content = self.reply(text)
        if self.script.delay:
            await asyncio.sleep(self.script.delay)
        out = self.script.output_tokens or max(1, math.ceil(len(content) / 4))
        n = len(self.calls)
        return web.json_response({
            "id": f"chatcmpl-judge-{n}", "object": "chat.completion", "created": 1700000000,
            "model": _model(raw),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": math.ceil(len(raw) / 4), "completion_tokens": out,
                      "total_tokens": math.ceil(len(raw) / 4) + out}})

    async def list_calls(self, request: web.Request) -> web.Response:
        return web.json_response({"count": len(self.calls), "calls": self.calls,
                                  "script": asdict(self.script)})

    async def reset_route(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            script = JudgeScript.from_dict(json.loads(raw)) if raw else self.script
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.reset(script)
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/_judge/calls", self.list_calls)
        app.router.add_post("/_judge/reset", self.reset_route)
        return app


def _model(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return "scripted-judge"
    return str(doc.get("model", "scripted-judge")) if isinstance(doc, dict) else "scripted-judge"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tether-scripted-judge", description=__doc__.split("\n")[0])
    p.add_argument("--host", default=LOOPBACK)
    p.add_argument("--port", type=int, default=0)
    for f in fields(JudgeScript):
        kind = {"change_after": int, "seed": int, "output_tokens": int,
                "reason_suffix": str}.get(f.name, float)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    args = vars(p.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    run_until_signalled(ScriptedJudge(JudgeScript(**args)).app(), host, port)


if __name__ == "__main__":
    main()
