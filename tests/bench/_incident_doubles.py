"""The incident's provider and tool, as test doubles on 127.0.0.1, and the provider's bill.

* The model: tether_examples' scripted model answering every turn with the same ``lookup`` tool
  call after ``latency_s`` (the script's ``delay``), billing input tokens from the prompt it was
  actually sent (the double's default: a quarter of the messages' JSON length) — so the prompt's
  size is real bytes on the wire, not a number in a script. A middleware stamps each answered
  request with the time, for the spend-over-time curve.
* The tool: tether_examples' fault server; the agent's tool URL is its ``/malformed`` route (200,
  ``application/json``, truncated JSON), and its hit counter counts every attempt that reached it.

The bill is the double's request log priced by genai-prices (``calc_price`` per call, the model
named as in the task): what the provider would charge, computed without the sidecar.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from genai_prices import Usage, calc_price

from tether_examples import fault_tools, scripted_model
from tether_examples._serve import serve_in_thread

__all__ = ["Doubles", "doubles", "price"]

MAX_TOKENS = 1024  # what the agent asks for (tests/bench/_incident_agent.py): a hold's output
TOOL_ROUTE = "/malformed"


def script(model: str, latency_s: float) -> dict[str, Any]:
    return {"model": model, "after_last": "repeat_last", "turns": [{
        "content": "The lookup did not return a usable result; I will look the payment up again.",
        "tool_calls": [{"id": "call_lookup", "name": "lookup",
                        "arguments": {"payment_id": "pay_4411"}}],
        "delay": latency_s}]}


def price(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """What the provider charges for one call, by genai-prices."""
    calc = calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens),
                      model_ref=model, provider_id="openai")
    return Decimal(str(calc.total_price))


@dataclass
class Doubles:
    model: str  # the model's name, for pricing
    model_url: str
    tool_url: str
    model_app: web.Application
    tool_app: web.Application
    answered: list[tuple[float, int]] = field(default_factory=list)  # (time, log index)

    def billed(self) -> list[tuple[float, Decimal, int]]:
        """(time answered, cost, input tokens) of every billed call, in order."""
        log = self.model_app[scripted_model.STATE].requests
        out = []
        for at, i in list(self.answered):
            usage = log[i]["usage"]
            if usage is not None:  # an error answer is not billed
                out.append((at, price(self.model, usage["input_tokens"],
                                      usage["output_tokens"]), usage["input_tokens"]))
        return out

    def bill(self) -> Decimal:
        return sum((cost for _, cost, _ in self.billed()), Decimal(0))

    def one_hold(self) -> Decimal:
        """One call's hold: the largest prompt billed, with the agent's max_tokens of output."""
        largest = max((tokens for _, _, tokens in self.billed()), default=0)
        return price(self.model, largest, MAX_TOKENS)

    def tool_hits(self) -> int:
        return self.tool_app[fault_tools.STATE].hits[TOOL_ROUTE]


def _stamp(answered: list[tuple[float, int]], app: web.Application) -> Any:
    @web.middleware
    async def stamp(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        # The agent makes one call at a time, so this request's log entry is the next one.
        index = len(app[scripted_model.STATE].requests)
        response = await handler(request)
        if request.path.startswith("/v1/"):
            answered.append((time.time(), index))
        return response
    return stamp


@contextmanager
def doubles(model: str, latency_s: float) -> Iterator[Doubles]:
    model_app = scripted_model.build_app(script(model, latency_s))
    answered: list[tuple[float, int]] = []
    model_app.middlewares.append(_stamp(answered, model_app))
    tool_app = fault_tools.build_app()
    with serve_in_thread(model_app) as model_url, serve_in_thread(tool_app) as tool_url:
        yield Doubles(model, model_url, tool_url + TOOL_ROUTE, model_app, tool_app, answered)
