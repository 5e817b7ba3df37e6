"""The $800 incident, replayed (issue #11, item 2): the same no-backoff agent loop against a
tool that only answers malformed JSON, with tether and without.

    cd /work/main && .venv/bin/python -m tests.bench.incident [--plot docs/incident.png]

About 4 minutes with the defaults: the arm with tether runs until its hard limit stops it
(~2.5 min at 1.2 s a call), the arm without until the test stops it (``--direct-seconds``).
Needs prometheus, alertmanager (hack/observability.sh) and helm (hack/helm.sh), found as the
tests find them. What runs and why these figures: tests/bench/_incident.py; docs/incident.md.

Prints the timeline of each arm, then as its last line one JSON object:
``{"scenario": …, "tether": {"timeline": …, "billUSD": …}, "direct": {…}}`` (the spend curves
are left out of it; ``_out/bench/incident.json`` has everything).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from ._incident import Scenario, direct_arm, tether_arm

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_out" / "bench" / "incident.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    d = Scenario()
    p = argparse.ArgumentParser(prog="python -m tests.bench.incident",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=d.model, help="an OpenAI model genai-prices knows")
    p.add_argument("--prompt-tokens", type=int, default=d.prompt_tokens)
    p.add_argument("--latency", type=float, default=d.latency_s, help="seconds per model call")
    p.add_argument("--soft", default=d.soft_usd, help="softLimitUSD")
    p.add_argument("--hard", default=d.hard_usd, help="hardLimitUSD")
    p.add_argument("--direct-seconds", type=float, default=d.direct_seconds,
                   help="how long the arm without tether may run")
    p.add_argument("--plot", type=Path, help="write the spend-over-time PNG here")
    return p.parse_args(argv)


def timeline(r: dict[str, Any]) -> list[str]:
    t, at = r["timeline"], r["atNotification"] or {}
    agent = r["agent"]

    events = [
        ("softLimitCrossed", f"soft limit ${r['softLimitUSD']} crossed on the provider's bill"),
        ("sidecarSawSoft", "the sidecar's /status counts the soft-limit hit"),
        ("alertPending", "TetherTaskSoftLimitReached active in Prometheus (activeAt; for: 0s, "
                         "so pending and firing are one evaluation)"),
        ("alertFiring", "TetherTaskSoftLimitReached seen firing in Prometheus"),
        ("receiverNotified", f"Alertmanager's webhook receiver notified; the task then: "
                             f"{at.get('phase')}, ${at.get('spentUSD')} spent"),
        ("hardStop", f"hard stop: the sidecar refused model call {agent['modelCalls'] + 1} "
                     "(402, BudgetExceeded)"),
        ("hardAlertFiring", "TetherTaskHardLimitReached seen firing in Prometheus"),
        ("hardAlertNotified", "TetherTaskHardLimitReached at the receiver"),
        ("agentExited", f"agent exited; tether run: {r['phase']}, exit code {r['exitCode']}, "
                        f"last checkpoint step {r['lastCheckpointStep']}"),
    ]
    seen = sorted((t[k], what) for k, what in events if t.get(k) is not None)
    return [
        *(f"  t+{when:7.2f} s  {what}" for when, what in seen),
        *(f"  (never)      {what}" for k, what in events if t.get(k) is None),
        f"  bill ${float(r['billUSD']):.4f} for {r['modelCallsBilled']} model calls (hard "
        f"${r['hardLimitUSD']} + one hold ${float(r['oneHoldUSD']):.4f}); tool attempts per "
        f"call {r['attemptsPerToolCall']:.2f} ({r['toolHits']} hits / {agent['toolCalls']} "
        "calls)",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sc = Scenario(model=args.model, prompt_tokens=args.prompt_tokens, latency_s=args.latency,
                  soft_usd=args.soft, hard_usd=args.hard, direct_seconds=args.direct_seconds)
    with tempfile.TemporaryDirectory(prefix="tether-incident-") as tmp:
        teth = tether_arm(sc, Path(tmp) / "tether")
        direct = direct_arm(sc, Path(tmp) / "direct")
    result = {"scenario": {"model": sc.model, "promptTokens": sc.prompt_tokens,
                           "latencySeconds": sc.latency_s, "softLimitUSD": sc.soft_usd,
                           "hardLimitUSD": sc.hard_usd}, "tether": teth, "direct": direct}
    print(f"The incident replayed: {sc.model}, {sc.prompt_tokens:,}-token prompt, "
          f"{sc.latency_s:g} s per call, a tool answering only malformed JSON")
    print("With tether (tether run, the AgentTask's defaults; Prometheus and Alertmanager with "
          "the chart's rules):")
    print("\n".join(timeline(teth)))
    print(f"Without tether (stopped by the test after {sc.direct_seconds:g} s):")
    print(f"  {direct['modelCallsBilled']} model calls, bill ${float(direct['billUSD']):.4f}; "
          f"first to last answer {direct['rateWindowSeconds']} s: ${direct['usdPerMinute']}/min, "
          f"${direct['projected40MinUSD']:,} projected over 40 minutes; tool attempts per call "
          f"{direct['attemptsPerToolCall']:.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        from ._incident_plot import plot
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    brief = {**result, "tether": {k: v for k, v in teth.items() if k != "spend"},
             "direct": {k: v for k, v in direct.items() if k != "spend"}}
    print(json.dumps(brief))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
