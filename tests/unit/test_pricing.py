"""Our fast price path must agree with genai-prices to the last decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from tether_api import ModelSpec
from tether_sidecar.errors import StartupError
from tether_sidecar.pricing import Price

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
          ("anthropic", "claude-haiku-4-5")]


@pytest.mark.parametrize(("provider", "name"), MODELS)
@settings(max_examples=40, deadline=None)
@given(inp=st.integers(0, 400_000), out=st.integers(0, 64_000), cached=st.integers(0, 1000))
def test_matches_genai_prices(provider: str, name: str, inp: int, out: int, cached: int) -> None:
    price = Price(ModelSpec(provider=provider, name=name))  # type: ignore[arg-type]
    cached = min(cached, inp)
    expected = calc_price(Usage(input_tokens=inp, output_tokens=out,
                                cache_read_tokens=cached or None),
                          model_ref=name, provider_id=provider).total_price
    assert price.cost(inp, out, cache_read=cached) == expected


def test_spec_pricing_overrides() -> None:
    model = ModelSpec.model_validate({"provider": "openai", "name": "gpt-4o",
                                      "pricing": {"inputPerMTok": "1.00", "outputPerMTok": "2.00"}})
    assert Price(model).cost(1_000_000, 500_000) == Decimal("2.00")


def test_unknown_model_is_a_startup_error_not_a_free_call() -> None:
    with pytest.raises(StartupError, match=r"spec\.model\.pricing"):
        Price(ModelSpec(provider="openai", name="no-such-model-xyz"))
