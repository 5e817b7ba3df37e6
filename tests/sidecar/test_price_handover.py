"""The model's price handed to the sidecar by whoever starts it (the operator, tether run):
spend is genai-prices' price all the same, and a price the sidecar cannot read stops it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from genai_prices import Usage, calc_price

from tether_api import ModelSpec
from tether_examples._serve import serve_in_thread
from tether_sidecar.pricing import resolve

from . import _counting_model
from .proc import Sidecar, task_doc


@pytest.fixture
def counting_model() -> Iterator[str]:
    with serve_in_thread(_counting_model.build_app()) as url:
        yield url


def test_spend_with_a_handed_over_price_is_genai_prices(
        sidecar: Callable[..., Sidecar], counting_model: str) -> None:
    price = resolve(ModelSpec(provider="openai", name="gpt-4o"))
    assert price is not None
    sc = sidecar(task_doc(counting_model), "--model-price", price)
    r = httpx.post(sc.url + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-4o", "max_tokens": 32,
        "messages": [{"role": "user", "content": "How many lighthouses are there?"}]})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    expected = calc_price(Usage(input_tokens=usage["prompt_tokens"],
                                output_tokens=usage["completion_tokens"]),
                          model_ref="gpt-4o", provider_id="openai").total_price
    status = sc.status()
    assert Decimal(status["spentUSD"]) == expected and status["priceSource"] == "genai-prices"


def test_an_unreadable_price_stops_the_sidecar_naming_it(tmp_path: Path,
                                                         counting_model: str) -> None:
    sc = Sidecar(tmp_path, task_doc(counting_model), "--model-price", '{"provider": "openai"}')
    done = subprocess.run(sc.command(), env=sc.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--model-price or TETHER_SIDECAR_MODEL_PRICE: not a price" in done.stderr


def test_tether_run_hands_the_sidecar_its_price(tmp_path: Path, counting_model: str) -> None:
    """As the operator does (tests/unit/test_manifests.py): the sidecar's own command line."""
    from tether_cli.run import LocalRun

    doc = task_doc(counting_model)
    del doc["spec"]["model"]["credentialsSecretRef"]
    doc["spec"]["agent"]["command"] = ["python", "-c", "pass"]
    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump(doc))
    run = LocalRun(task_file, tmp_path / "state")
    run.start()
    try:
        assert run.sidecar is not None and run.agent is not None
        argv = Path(f"/proc/{run.sidecar.pid}/cmdline").read_bytes().split(b"\0")
        handed = argv[argv.index(b"--model-price") + 1].decode()
        assert handed == resolve(ModelSpec(provider="openai", name="gpt-4o"))
        code = run.agent.wait(60)
    finally:
        if run.agent is not None and run.agent.poll() is None:
            run.agent.kill()
        status = run.finish(run.agent.wait(60) if run.agent is not None else None)
    assert code == 0 and status["phase"] == "Succeeded"
