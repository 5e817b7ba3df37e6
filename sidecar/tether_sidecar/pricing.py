"""What a call costs, from the task's own pricing or from genai-prices.

The model's price is resolved once, before the task runs (a task runs for hours, not for price
epochs), so a model genai-prices does not know is a start-up error, never a free call. genai-prices'
own ``calc_price`` takes ~130 µs, more than our whole per-call budget, so input/output token prices
(flat, or tiered by the request's input tokens) are computed here with the same Decimal arithmetic
and tier rule; usage with cache tokens goes through genai-prices itself.
tests/unit/test_pricing.py checks both paths against genai-prices.

Resolving costs ~40 to 60 ms of start-up CPU (genai-prices imports its 1.6 MB price table and an
HTTP client; docs/benchmarks.md, the footprint section), so whoever starts the sidecar — the
operator (manifests.py) and ``tether run`` — resolves it with :func:`resolve` and hands it over
(``--model-price`` or ``TETHER_SIDECAR_MODEL_PRICE``), a JSON text of genai-prices' figures.
Started without it (an older operator, a hand-run sidecar), or with another model's price, the
sidecar resolves the price itself, as before. genai-prices stays the only source of a price:
nothing here is a price table.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

from tether_api import ModelSpec

from .errors import StartupError

__all__ = ["PRICE_ENV", "Price", "resolve"]

log = logging.getLogger(__name__)

PRICE_ENV = "TETHER_SIDECAR_MODEL_PRICE"
_MILLION = Decimal(1_000_000)
_GENAI_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "openai-compatible": None}


class Tier(NamedTuple):
    start: int
    price: Decimal


class Tiered(NamedTuple):
    """A tiered per-MTok price as genai-prices states it, without importing genai-prices."""

    base: Decimal
    tiers: tuple[Tier, ...]


def _lookup(model: ModelSpec) -> Any:
    """genai-prices' ModelPrice for ``model`` now; a model it does not know is a start-up error."""
    from genai_prices import Usage, calc_price

    try:
        calc = calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model.name,
                          provider_id=_GENAI_PROVIDER[model.provider])
    except LookupError as exc:
        raise StartupError(
            f"spec.model.name: genai-prices has no price for {model.provider} model "
            f"{model.name!r}; set spec.model.pricing {{inputPerMTok, outputPerMTok}}"
        ) from exc
    return calc.model_price


def resolve(model: ModelSpec) -> str | None:
    """The value of ``TETHER_SIDECAR_MODEL_PRICE`` for a sidecar running ``model``: None when
    the task declares its own pricing (nothing to resolve) or genai-prices does not know the
    model — the sidecar then raises that start-up error itself, where the user reads it."""
    if model.pricing is not None:
        return None
    try:
        found = _lookup(model)
    except StartupError:
        return None
    prices: dict[str, Any] = {}
    for key, value in vars(found).items():
        if key.startswith("_") or value is None:
            continue
        prices[key] = str(value) if isinstance(value, Decimal) else {
            "base": str(value.base),
            "tiers": [{"start": t.start, "price": str(t.price)} for t in value.tiers]}
    doc = {"provider": model.provider, "model": model.name, "prices": prices}
    return orjson.dumps(doc).decode()


def _parse(text: str, model: ModelSpec) -> dict[str, Decimal | Tiered] | None:
    """The prices in ``text`` (from :func:`resolve`); None if they are another model's."""
    try:
        doc = orjson.loads(text)
        if (doc["provider"], doc["model"]) != (model.provider, model.name):
            log.warning("%s is the price of %s model %r, not of the task's %s model %r: "
                        "resolving the task's own", PRICE_ENV, doc["provider"], doc["model"],
                        model.provider, model.name)
            return None
        return {str(k): _decimal(v) if isinstance(v, str) else Tiered(
            _decimal(v["base"]), tuple(Tier(int(t["start"]), _decimal(t["price"]))
                                       for t in sorted(v["tiers"], key=lambda t: t["start"])))
                for k, v in doc["prices"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StartupError(
            f"--model-price or {PRICE_ENV}: not a price this sidecar can read "
            f"({type(exc).__name__}: {exc}); it is set by the operator (or tether run) from "
            "genai-prices: unset it to let the sidecar resolve the price itself, or run "
            "matching versions") from exc


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a decimal number") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"{text!r} is not a price")
    return value


class Price:
    def __init__(self, model: ModelSpec, resolved: str | None = None) -> None:
        self.input_mtok: Any = None
        self.output_mtok: Any = None
        self._model_price: Any = None  # genai-prices' ModelPrice, for usage with cache tokens
        self._resolved: dict[str, Decimal | Tiered] | None = None
        if model.pricing is not None:
            self.input_mtok = model.pricing.input_per_m_tok
            self.output_mtok = model.pricing.output_per_m_tok
            self.source = "spec"
            return
        self.source = "genai-prices"
        self._resolved = _parse(resolved, model) if resolved else None
        if self._resolved is None:
            self._model_price = _lookup(model)
            self.input_mtok = self._model_price.input_mtok
            self.output_mtok = self._model_price.output_mtok
        else:
            self.input_mtok = self._resolved.get("input_mtok")
            self.output_mtok = self._resolved.get("output_mtok")

    @property
    def handed_over(self) -> bool:
        """Whether the price came resolved from whoever started the sidecar."""
        return self._resolved is not None

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
             cache_write: int = 0) -> Decimal:
        """USD for one call's usage; ``input_tokens`` includes cached tokens, as providers'
        usage reports count them (genai-prices' convention)."""
        if self.source == "spec" or not (cache_read or cache_write):
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
        total: Decimal = self._genai_model_price().calc_price(usage)["total_price"]
        return total

    def _genai_model_price(self) -> Any:
        """genai-prices' ModelPrice, rebuilt from the handed-over figures on the first call
        with cache tokens (importing genai-prices then, not at start-up)."""
        if self._model_price is None:
            from genai_prices.types import ModelPrice, TieredPrices
            from genai_prices.types import Tier as GenaiTier

            assert self._resolved is not None
            self._model_price = ModelPrice(**{
                k: v if isinstance(v, Decimal) else TieredPrices(
                    base=v.base, tiers=[GenaiTier(start=t.start, price=t.price) for t in v.tiers])
                for k, v in self._resolved.items()})
        return self._model_price


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
