"""Run the real sidecar under cProfile, recording only between two signals.

    python -m tests.bench._profiled_sidecar --profile-out PREFIX -- <tether-sidecar arguments>

SIGUSR1 starts recording; SIGUSR2 stops it and writes ``PREFIX.N.pstats`` (N = 1, 2, …), so
start-up (imports, tokenizer load) and warm-up stay out of the figures. The handlers run on the
main thread, which is the event loop's, so that is the thread profiled; the span-export thread is
not (the sampling profile in :mod:`tests.bench._profile` covers every thread).
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType

from tether_sidecar.cli import main as sidecar_main


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 3 or argv[0] != "--profile-out" or argv[2] != "--":
        sys.exit("usage: python -m tests.bench._profiled_sidecar --profile-out PREFIX -- ARGS")
    prefix, rest = argv[1], argv[3:]
    prof = cProfile.Profile()
    dumps = [0]

    def start(_sig: int, _frame: FrameType | None) -> None:
        prof.enable()

    def stop(_sig: int, _frame: FrameType | None) -> None:
        prof.disable()
        dumps[0] += 1
        prof.dump_stats(f"{prefix}.{dumps[0]}.pstats")
        prof.clear()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sidecar_main(rest)


if __name__ == "__main__":
    main()
