"""Our fast price path must agree with genai-prices to the last decimal."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from tether_api import ModelSpec
from tether_sidecar.errors import StartupError
from tether_sidecar.pricing import Price, resolve

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


@pytest.mark.parametrize(("provider", "name"), MODELS)
@settings(max_examples=40, deadline=None)
@given(inp=st.integers(0, 400_000), out=st.integers(0, 64_000), cached=st.integers(0, 1000),
       written=st.integers(0, 1000))
def test_a_price_handed_over_costs_what_genai_prices_says(
        provider: str, name: str, inp: int, out: int, cached: int, written: int) -> None:
    """The operator's (or tether run's) resolved price, tiers and cache prices included."""
    model = ModelSpec(provider=provider, name=name)  # type: ignore[arg-type]
    price = Price(model, resolve(model))
    assert price.handed_over
    cached, written = min(cached, inp), min(written, inp - min(cached, inp))
    expected = calc_price(Usage(input_tokens=inp, output_tokens=out,
                                cache_read_tokens=cached or None,
                                cache_write_tokens=written or None),
                          model_ref=name, provider_id=provider).total_price
    assert price.cost(inp, out, cache_read=cached, cache_write=written) == expected


def test_a_price_handed_over_spares_the_start_up_genai_prices() -> None:
    """The point of handing it over: the sidecar's start-up does not import genai-prices."""
    code = ("import sys; from tether_api import ModelSpec; from tether_sidecar.pricing import "
            "Price; m = ModelSpec(provider='anthropic', name='claude-sonnet-4-5'); "
            f"p = Price(m, {resolve(ModelSpec(provider='anthropic', name='claude-sonnet-4-5'))!r});"
            " print(p.cost(300000, 10), 'genai_prices' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["1.800225", "False"]  # over 200k: 300,000 * $6 + 10 * $22.5 per MTok


def test_another_models_price_is_ignored_and_the_tasks_own_resolved() -> None:
    mini = resolve(ModelSpec(provider="openai", name="gpt-4o-mini"))
    price = Price(ModelSpec(provider="openai", name="gpt-4o"), mini)
    assert not price.handed_over
    assert price.cost(1_000_000, 0) == Decimal("2.5")  # gpt-4o's, not gpt-4o-mini's 0.15


@pytest.mark.parametrize("text", ["{", "[]", '{"provider": "openai"}',
                                  '{"provider": "openai", "model": "gpt-4o", "prices": '
                                  '{"input_mtok": "-1"}}',
                                  '{"provider": "openai", "model": "gpt-4o", "prices": '
                                  '{"input_mtok": {"base": "x", "tiers": []}}}'])
def test_an_unreadable_price_is_a_start_up_error_naming_it(text: str) -> None:
    with pytest.raises(StartupError, match="TETHER_SIDECAR_MODEL_PRICE: not a price"):
        Price(ModelSpec(provider="openai", name="gpt-4o"), text)


def test_nothing_to_hand_over_for_a_declared_or_unknown_price() -> None:
    declared = ModelSpec.model_validate({"provider": "openai", "name": "gpt-4o", "pricing": {
        "inputPerMTok": "1.00", "outputPerMTok": "2.00"}})
    assert resolve(declared) is None
    unknown = ModelSpec(provider="openai", name="no-such-model-xyz")
    assert resolve(unknown) is None  # the sidecar raises the start-up error itself:
    with pytest.raises(StartupError, match=r"spec\.model\.pricing"):
        Price(unknown, resolve(unknown))
