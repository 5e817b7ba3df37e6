"""The incident's picture: spend over time with tether and without, the limits, the alert times.

Left, the replay as measured: both arms' provider bill against time since their agent started,
the soft and hard limits as lines, and markers where the soft limit was crossed, the alert
fired in Prometheus, the receiver was notified and the sidecar stopped the task. Right, the
40 minutes of the incident: the arm without tether extrapolated from its measured rate (dashed),
the arm with tether flat at its bill once stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

__all__ = ["plot"]

MARKERS = [("softLimitCrossed", "soft limit crossed", "o"),
           ("alertPending", "alert active in Prometheus (activeAt)", "^"),
           ("receiverNotified", "receiver notified", "s"),
           ("hardStop", "hard stop (BudgetExceeded)", "X")]


def _at(curve: list[list[float]], t: float) -> float:
    """The bill at time ``t`` (the last point at or before it)."""
    return next((usd for at, usd in reversed(curve) if at <= t), 0.0)


def _zoom(ax: Any, curve: list[list[float]], timeline: dict[str, Any], soft: float) -> None:
    """An inset around the soft-limit crossing: the markers are a second or two apart."""
    first, last = timeline["softLimitCrossed"], timeline["receiverNotified"]
    if first is None or last is None:
        return
    inset = ax.inset_axes((0.56, 0.07, 0.41, 0.36))
    inset.plot(*zip(*curve, strict=True), color="tab:blue", drawstyle="steps-post")
    inset.axhline(soft, color="tab:orange", lw=1, ls=":")
    for key, _, marker in MARKERS[:3]:
        t = timeline[key]
        inset.plot([t], [_at(curve, t)], marker=marker, ls="none", ms=8)
    inset.set_xlim(first - 1.5, last + 1.5)
    low, high = _at(curve, first - 1.5), _at(curve, last + 1.5)
    inset.set_ylim(low - 0.02 * soft, high + 0.02 * soft)
    inset.tick_params(labelsize=7)
    inset.set_title("around the soft limit", fontsize=7.5)
    ax.indicate_inset_zoom(inset, edgecolor="0.5")


def plot(result: dict[str, Any], path: Path) -> None:
    teth, direct, sc = result["tether"], result["direct"], result["scenario"]
    soft, hard = float(sc["softLimitUSD"]), float(sc["hardLimitUSD"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), width_ratios=[3, 2])
    for ax in (left, right):
        ax.axhline(soft, color="tab:orange", lw=1, ls=":", label=f"soft limit ${soft:g}")
        ax.axhline(hard, color="tab:red", lw=1, ls=":", label=f"hard limit ${hard:g}")
        ax.set_ylabel("provider bill (USD)")
        ax.grid(alpha=0.3)
    tc = [[0.0, 0.0], *teth["spend"]]
    dc = [[0.0, 0.0], *direct["spend"]]
    end = max(tc[-1][0], dc[-1][0]) * 1.15
    left.plot(*zip(*tc, strict=True), color="tab:blue", drawstyle="steps-post",
              label="with tether")
    bound = direct["boundSeconds"]
    left.plot(*zip(*dc, strict=True), color="tab:gray", drawstyle="steps-post", lw=4,
              alpha=0.45, zorder=1, label=f"without tether (stopped by the test at {bound:g} s)")
    top = dc[-1][1] + direct["usdPerMinute"] / 60 * (end - dc[-1][0])
    left.plot([dc[-1][0], end], [dc[-1][1], top],
              color="tab:gray", ls="--", label="without tether, at its measured rate")
    for key, label, marker in MARKERS:
        t = teth["timeline"].get(key)
        if t is not None:
            left.plot([t], [_at(tc, t)], marker=marker, ls="none", ms=8, label=f"{label} {t:.1f} s")
    _zoom(left, tc, teth["timeline"], soft)
    left.set_xlim(0, end)
    left.set_ylim(0, max(hard * 1.3, top) * 1.05)
    left.set_xlabel("seconds since the agent started")
    left.set_title("The replay, as measured")
    left.legend(fontsize=7.5, loc="upper left")

    minutes = direct["projected40MinUSD"] / direct["usdPerMinute"]
    right.plot([0, minutes], [0, direct["projected40MinUSD"]], color="tab:gray", ls="--",
               label=f"without tether: ${direct['projected40MinUSD']:,.0f} in 40 min (projected)")
    stop_min = (teth["timeline"]["agentExited"] or 0) / 60
    bill = float(teth["billUSD"])
    right.plot([0, stop_min, minutes], [0, bill, bill], color="tab:blue",
               label=f"with tether: ${bill:.2f}, stopped at {stop_min:.1f} min")
    right.set_xlabel("minutes")
    right.set_title("Over the incident's 40 minutes")
    right.legend(fontsize=7.5, loc="upper left")
    fig.suptitle(f"The incident replayed: {sc['model']}, {sc['promptTokens']:,}-token prompt, "
                 f"{sc['latencySeconds']:g} s per call, a tool that only answers malformed JSON",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # redraw from a saved run: RESULT.json OUT.png
    import json
    import sys

    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
