"""The sidecar's termination message always parses, however large its summary grows."""

from __future__ import annotations

import json

from tether_sidecar.cli import TERMINATION_LIMIT, termination_message


def test_a_summary_that_fits_is_written_whole() -> None:
    doc = {"phase": "Succeeded", "spentUSD": "0.42", "llmCalls": 3}
    assert json.loads(termination_message(doc)) == doc


def test_an_oversized_summary_keeps_what_the_operator_reads_and_stays_json() -> None:
    doc = {"phase": "BudgetExceeded", "spentUSD": "1.00", "step": 7, "traceID": "ab" * 16,
           "toolCalls": {f"tool-{i}": i for i in range(400)}}
    data = termination_message(doc)
    assert len(json.dumps(doc)) > TERMINATION_LIMIT >= len(data)
    assert json.loads(data) == {"phase": "BudgetExceeded", "spentUSD": "1.00", "step": 7,
                                "traceID": "ab" * 16}
