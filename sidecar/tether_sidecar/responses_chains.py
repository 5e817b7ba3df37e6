"""Conversation state the provider keeps, counted as far as the sidecar saw it.

A Responses call may continue context the provider stores: ``previous_response_id`` (the whole
chain before it, inputs and outputs), ``conversation`` (a Conversations API object), ``prompt``
(a stored prompt template) and ``item_reference`` input items. The sidecar never sees that text,
so it cannot estimate it, and it cannot compact it either. What it does see is the usage the
provider reported for every response that passed through it: a response's ``input_tokens``
counted its whole context, and its output joined the conversation after it. So a call that
continues response R carries R's ``input_tokens + output_tokens`` that the sidecar cannot see
(an upper bound: a provider that drops earlier reasoning from the context bills less), and a
call in conversation C carries those of the last response of C the sidecar saw.

What it cannot count is said, not guessed: a response it never saw (made before this state
volume, or by someone else), a conversation with none of its responses seen, a stored prompt, an
item reference. The caller puts both in the call's span and logs what is uncounted, once each.

The figures are kept in ``responses.jsonl`` on the state dir (a line per response), so a
restarted sidecar on the same volume still counts chains its earlier attempts saw. A line lost
with a kill only makes that response uncounted, never miscounted: no fsync is spent on it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Held", "ResponseChains"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    tokens: int = 0  # tokens of provider-held context counted for this call
    counted: tuple[str, ...] = ()  # what they are
    uncounted: tuple[str, ...] = ()  # provider-held context this call uses that is not counted

    def describe(self) -> str:
        return "; ".join([*self.counted, *(f"uncounted: {u}" for u in self.uncounted)])


def _conversation_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


@dataclass
class ResponseChains:
    path: Path
    task: str = ""  # for log lines
    _seen: dict[str, tuple[int, int]] | None = None  # response id -> (input, output) tokens
    _last_in: dict[str, str] = field(default_factory=dict)  # conversation id -> response id
    _warned: set[str] = field(default_factory=set)

    def _load(self) -> dict[str, tuple[int, int]]:
        if self._seen is not None:
            return self._seen
        self._seen = {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return self._seen
        for number, line in enumerate(data.splitlines(), 1):
            try:
                doc = orjson.loads(line)
                self._remember(doc["id"], doc.get("conv"), int(doc["in"]), int(doc["out"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("%s line %d is not a response record (%s); that response's "
                            "tokens are not counted", self.path, number, exc)
        return self._seen

    def _remember(self, rid: str, conv: str | None, inp: int, out: int) -> None:
        assert self._seen is not None
        self._seen[rid] = (inp, out)
        if conv:
            self._last_in[conv] = rid

    def record(self, response: dict[str, Any]) -> None:
        """A response passed through the sidecar with its usage: remember its size."""
        rid, usage = response.get("id"), response.get("usage")
        if not isinstance(rid, str) or not isinstance(usage, dict):
            return
        inp, out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        conv = _conversation_id(response.get("conversation"))
        if self._load().get(rid) == (inp, out):
            return
        self._remember(rid, conv, inp, out)
        line = orjson.dumps({"id": rid, "conv": conv, "in": inp, "out": out}) + b"\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("Cannot record response %s in %s (%s); a restarted sidecar will not "
                        "count it in a chain that continues it", rid, self.path, exc.strerror)

    def held(self, body: dict[str, Any], *, warn: bool = True) -> Held:
        """The provider-held context the request ``body`` continues, counted where known."""
        seen = self._load()
        tokens, counted, uncounted = 0, [], []
        previous = body.get("previous_response_id")
        conv = _conversation_id(body.get("conversation"))
        for what, rid in (("previous_response_id", previous),
                          ("conversation", self._last_in.get(conv) if conv else None)):
            name = previous if what == "previous_response_id" else conv
            if not name:
                continue
            size = seen.get(rid) if isinstance(rid, str) else None
            if size is None:
                uncounted.append(f"{what} {name} (no response of it passed through this "
                                 "sidecar)")
                continue
            tokens += size[0] + size[1]
            counted.append(f"{what} {name}: {size[0]} input + {size[1]} output tokens "
                           f"reported for {rid}")
        prompt = body.get("prompt")
        if isinstance(prompt, dict):
            uncounted.append(f"prompt template {prompt.get('id')}")
        refs = sum(1 for i in body.get("input") or () if isinstance(i, dict)
                   and i.get("type") == "item_reference")
        if refs:
            uncounted.append(f"{refs} item_reference input item(s)")
        held = Held(tokens, tuple(counted), tuple(uncounted))
        if warn:
            self._warn(held)
        return held

    def _warn(self, held: Held) -> None:
        for what in held.uncounted:
            if what not in self._warned:
                self._warned.add(what)
                log.warning("Task %s: a /v1/responses call uses context the provider keeps "
                            "that the sidecar cannot count: %s; the context budget covers only "
                            "the rest (docs/sidecar.md, The Responses API)", self.task, what)
