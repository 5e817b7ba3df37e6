"""The redactor: planted canaries never come out, findings are counts, and it fails closed.

The engine is the real one (Presidio's recognizers and ours); canary values are random, made by
the committed corpus generator, so a value that survives is found by plain search.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.bench.redaction_corpus import KINDS, NER_KINDS, generate, score
from tether_sidecar.redact import Limits, RedactionFailed, Redactor

ROOT = Path(__file__).resolve().parents[2]
PATTERN_KINDS = [k for k in KINDS if k not in NER_KINDS]
RECALL_FLOOR = 0.98  # per kind on the seeded corpus; measured 1.00 for every pattern kind
PRECISION_FLOOR = 0.85  # per type; cards are lowest (a random 16-digit decoy passes Luhn 1 in 10)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def _canaries(seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Texts planting every pattern kind in its context (``token=…``), and the (kind, value)s."""
    samples = generate(len(PATTERN_KINDS), seed=seed, kinds=PATTERN_KINDS)
    return [s.text for s in samples], [(p.kind, p.value) for s in samples for p in s.planted]


def test_canaries_in_free_text_never_come_out(redactor: Redactor) -> None:
    texts, canaries = _canaries(seed=101)
    assert {k for k, _ in canaries} == set(PATTERN_KINDS)
    out, findings = redactor.redact_text("\n".join(texts))
    assert [k for k, v in canaries if v in out] == []
    assert sum(findings.values()) >= len(canaries)


def test_canaries_in_nested_json_never_come_out_and_keys_stay(redactor: Redactor) -> None:
    texts, canaries = _canaries(seed=202)
    record = {"answer": {"summary": "done", "items": [{"n": i, "detail": [t]}
                                                       for i, t in enumerate(texts)]},
              "count": 3, "ratio": 0.5, "ok": True, "none": None}
    out, findings = redactor.redact_json(record)
    dumped = json.dumps(out)
    assert [k for k, v in canaries if v in dumped] == []
    assert out["count"] == 3 and out["ratio"] == 0.5 and out["ok"] is True and out["none"] is None
    assert [item["n"] for item in out["answer"]["items"]] == list(range(len(texts)))
    assert sum(findings.values()) >= len(canaries)


def test_findings_are_counts_per_type_and_carry_no_values(redactor: Redactor) -> None:
    texts, canaries = _canaries(seed=303)
    _, findings = redactor.redact_json({"a": texts})
    assert set(findings) <= set(PATTERN_KINDS)
    assert all(type(n) is int and n > 0 for n in findings.values())
    blob = json.dumps(findings)
    assert [k for k, v in canaries if v in blob] == []


def test_card_number_written_as_a_json_number_is_redacted(redactor: Redactor) -> None:
    out, findings = redactor.redact_json({"pan": 4111111111111111, "order": 4111111111111112,
                                          "qty": 7})
    assert out == {"pan": "<CREDIT_CARD>", "order": 4111111111111112, "qty": 7}
    assert findings == {"CREDIT_CARD": 1}


def test_decoys_stay_readable(redactor: Redactor) -> None:
    text = ("scikit-learn (sk-learn) 1.5.2, token=placeholder, commit "
            "3f9a2c0d1e4b5a69788796a5b4c3d2e1f0a9b8c7 at 2026-11-30T10:00:00Z")
    out, findings = redactor.redact_text(text)
    assert (out, findings) == (text, {})


def test_redacting_twice_changes_nothing_more(redactor: Redactor) -> None:
    # The evaluator redacts again what a sidecar redacted: the markers are not findings.
    texts, _ = _canaries(seed=404)
    once, _ = redactor.redact_json(texts)
    twice, findings = redactor.redact_json(once)
    assert (twice, findings) == (once, {})


def test_recall_and_precision_floors_on_the_generated_corpus(redactor: Redactor) -> None:
    result = score(generate(400, seed=10, kinds=PATTERN_KINDS), redactor.find)
    low_recall = {k: r for k, r in result["recall"].items() if r < RECALL_FLOOR}
    low_precision = {k: p for k, p in result["precision"].items() if p < PRECISION_FLOOR}
    assert (low_recall, low_precision) == ({}, {})
    assert set(result["recall"]) == set(PATTERN_KINDS)


def test_a_record_over_the_cap_is_refused_without_its_text() -> None:
    canary = "sk-proj-" + "Q7w" * 20
    small = Redactor(Limits(max_chars=1000))
    with pytest.raises(RedactionFailed) as caught:
        small.redact_json({"answer": [canary] + ["x" * 500] * 2})
    assert caught.value.reason == "too_large"
    assert canary not in str(caught.value)


def test_a_record_past_its_budget_fails_closed_and_the_next_queues_and_fails_too() -> None:
    # ~60 KB of digit groups keeps the phone matcher busy for far longer than 10 ms.
    slow = " ".join(f"{i % 997:03d} {i % 89:02d}" for i in range(8000))
    tight = Redactor(Limits(budget_s=0.01))
    with pytest.raises(RedactionFailed) as caught:
        tight.redact_text(slow)
    assert caught.value.reason == "timeout"
    with pytest.raises(RedactionFailed) as queued:  # the first run still holds the worker
        tight.redact_text(slow)
    assert queued.value.reason == "timeout"
    # The runaway goes on in the background; it must not hold up the sidecar's exit.
    workers = [t for t in threading.enumerate() if t.name == "tether-redact"]
    assert workers and all(t.daemon for t in workers)


def test_what_is_not_json_is_refused() -> None:
    with pytest.raises(RedactionFailed) as caught:
        Redactor().redact_json({"a": {1, 2}})
    assert caught.value.reason == "engine_error"


def test_an_error_inside_the_engine_fails_closed_naming_only_its_type(redactor: Redactor) -> None:
    canary = "ada.deep7@example.org"
    deep: list[object] = [canary]
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    with pytest.raises(RedactionFailed) as caught:
        redactor.redact_json(deep)
    assert caught.value.reason == "engine_error"
    assert "RecursionError" in str(caught.value) and canary not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_budget_presidio_would_undercut_is_refused() -> None:
    # Presidio skips a pattern past REGEX_TIMEOUT_SECONDS (default 60) and only logs it.
    with pytest.raises(RedactionFailed) as caught:
        Redactor(Limits(budget_s=120)).redact_text("a@example.com")
    assert caught.value.reason == "config"
    assert "REGEX_TIMEOUT_SECONDS" in str(caught.value)


async def test_async_form_runs_off_the_loop(redactor: Redactor) -> None:
    out, findings = await redactor.redact_json_async(["mail ops.lead7@example.org now"])
    assert (out, findings) == (["mail <EMAIL_ADDRESS> now"], {"EMAIL_ADDRESS": 1})


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=env)


def test_the_sidecar_app_does_not_import_the_engine() -> None:
    done = _run("""
        import sys
        import tether_sidecar.app, tether_sidecar.redact
        heavy = sorted(m for m in ("presidio_analyzer", "spacy", "tldextract", "phonenumbers")
                       if m in sys.modules)
        print(heavy)
    """)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


_NO_NETWORK = """
    import sys
    attempts = []
    # What reaches past the machine: name look-ups and connections (urllib3 binds ::1 at
    # import to probe for IPv6, which leaves nothing).
    outbound = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg"}
    def hook(event, args):
        if event in outbound:
            attempts.append(event)
            raise PermissionError("network blocked by the redaction test: " + event)
    sys.addaudithook(hook)
    text = "write to ada.lovelace9@mail.example.co.uk, see https://docs.example.com/a?b=c"
    {body}
    print(attempts)
"""


def test_the_redactor_makes_no_network_call(tmp_path: Path) -> None:
    env = {**os.environ, "TLDEXTRACT_CACHE": str(tmp_path)}  # no suffix list cached before
    ours = _run(_NO_NETWORK.replace("{body}", """
    from tether_sidecar.redact import Redactor
    out, findings = Redactor().redact_text(text)
    assert findings == {"EMAIL_ADDRESS": 1}, findings
    """), env)
    assert (ours.returncode, ours.stdout.strip()) == (0, "[]"), ours.stderr
    # The same hook catches Presidio's stock e-mail recognizer reaching for the suffix list.
    stock = _run(_NO_NETWORK.replace("{body}", """
    from presidio_analyzer.predefined_recognizers import EmailRecognizer
    EmailRecognizer().analyze(text, ["EMAIL_ADDRESS"], None)
    """), env)
    assert stock.returncode == 0, stock.stderr
    assert stock.stdout.strip() != "[]"


def test_the_redactor_runs_on_a_read_only_root() -> None:
    # As the operator runs the sidecar (readOnlyRootFilesystem, HOME unwritable): nothing the
    # engine loads may need to write a cache. A private mount namespace; the machine's untouched.
    code = """
        from tether_sidecar.redact import Redactor
        print(Redactor().redact_text("ops@example.com key=Zx8Qp2Lm9Vt4Rb7Nc1Kd")[0])
    """
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -o remount,bind,ro / || exit 97; exec "$@"', "sh",
         sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "HOME": "/nonexistent"})
    assert done.returncode != 97, "needs root and unshare(1) (util-linux) for a mount namespace"
    assert (done.returncode, done.stdout.strip()) == (0, "<EMAIL_ADDRESS> key=<SECRET>"), \
        done.stderr[-2000:]
