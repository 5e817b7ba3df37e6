"""What a call costs, from the task's own pricing or from genai-prices.

The model's price is resolved once at start-up (a task runs for hours, not for price epochs), so a
model genai-prices does not know is a start-up error, never a free call. genai-prices' own
``calc_price`` takes ~130 µs, more than our whole per-call budget, so input/output token prices
(flat, or tiered by the request's input tokens) are computed here with the same Decimal arithmetic
and tier rule; usage with cache tokens goes through genai-prices itself.
tests/unit/test_pricing.py checks both paths against genai-prices.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tether_api import ModelSpec

from .errors import StartupError

__all__ = ["Price"]

_MILLION = Decimal(1_000_000)
_GENAI_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "openai-compatible": None}


class Price:
    def __init__(self, model: ModelSpec) -> None:
        self.model_price: Any = None
        self.input_mtok: Any = None
        self.output_mtok: Any = None
        if model.pricing is not None:
            self.input_mtok = model.pricing.input_per_m_tok
            self.output_mtok = model.pricing.output_per_m_tok
            self.source = "spec"
            return
        from genai_prices import Usage, calc_price

        try:
            calc = calc_price(
                Usage(input_tokens=1, output_tokens=1),
                model_ref=model.name,
                provider_id=_GENAI_PROVIDER[model.provider],
            )
        except LookupError as exc:
            raise StartupError(
                f"spec.model.name: genai-prices has no price for {model.provider} model "
                f"{model.name!r}; set spec.model.pricing {{inputPerMTok, outputPerMTok}}"
            ) from exc
        self.model_price = calc.model_price
        self.source = "genai-prices"
        self.input_mtok = self.model_price.input_mtok
        self.output_mtok = self.model_price.output_mtok

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
             cache_write: int = 0) -> Decimal:
        """USD for one call's usage; ``input_tokens`` includes cached tokens, as providers'
        usage reports count them (genai-prices' convention)."""
        if self.model_price is None or not (cache_read or cache_write):
            rate_in = _rate(self.input_mtok, input_tokens)
            rate_out = _rate(self.output_mtok, input_tokens)
            return (input_tokens * rate_in + output_tokens * rate_out) / _MILLION
        from genai_prices import Usage

        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read or None,
            cache_write_tokens=cache_write or None,
        )
        total: Decimal = self.model_price.calc_price(usage)["total_price"]
        return total


def _rate(price: Any, total_input: int) -> Decimal:
    """Per-MTok rate; a tiered price applies the highest tier whose start the request's input
    tokens exceed, to all of its tokens (genai-prices' rule, as providers bill long context)."""
    if price is None:
        return Decimal(0)
    if isinstance(price, Decimal):
        return price
    rate: Decimal = price.base
    for tier in sorted(price.tiers, key=lambda t: t.start):
        if total_input > tier.start:
            rate = tier.price
    return rate
