"""``tether eval``: the continuous-evaluation commands (issue #10).

``tether eval detect`` runs the evaluator's change detector (``tether_eval.detect``) over judged
samples on stdin. Other subcommands (``report``, ``export``) register here the same way: a
function that adds its parser to the group and sets ``handler`` to a callable returning the exit
code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from .eval_report import add_export, add_report

__all__ = ["BadLine", "add_eval_commands", "detect_stream"]

Handler = Callable[[argparse.Namespace], int]
EXIT_BAD_INPUT = 2  # bad parameters or a bad input line (argparse's usage errors are 2 too)
_FLAGS = {"baseline": "--baseline", "shift": "--shift", "falseAlarmEvery": "--false-alarm-every"}


def add_eval_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``eval`` group to the top-level subparsers; ``args.handler(args)`` runs one."""
    group = sub.add_parser("eval", help="continuous evaluation: the change detector, reports")
    commands = group.add_subparsers(dest="eval_command", required=True)
    _add_detect(commands)
    add_report(commands)
    add_export(commands)


def _add_detect(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    detect = commands.add_parser(
        "detect", help="alarm on a drop of the pass rate in judged samples read from stdin",
        description="Reads one JSON object per line on stdin, {\"pass\": true|false} (one judged "
        "sample each, in order; other keys are ignored) and prints {\"index\": I} for every "
        "alarm: I is the 0-based index of the sample at which the Bernoulli CUSUM fires; it then "
        "starts afresh. Exit 0 at the end of input; 2 with a message naming the line on bad "
        "input (alarms before it are already printed) or on bad parameters.")
    detect.add_argument("--baseline", type=float, required=True,
                        help="in-control pass rate P, 0 < P < 1 (e.g. 0.85)")
    detect.add_argument("--shift", type=float, required=True,
                        help="the drop D to detect: alarm when the pass rate is P - D (e.g. 0.05)")
    detect.add_argument("--false-alarm-every", type=int, required=True, metavar="N",
                        help="one false alarm every N in-control samples on average (N >= 2)")
    detect.set_defaults(handler=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    from tether_eval.detect import Cusum, DetectorError

    try:
        cusum = Cusum.for_params(args.baseline, args.shift, args.false_alarm_every)
    except DetectorError as exc:
        print(f"tether eval detect: {_FLAGS.get(exc.field, exc.field)}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        for index in detect_stream(cusum.update, sys.stdin):
            print(json.dumps({"index": index}), flush=True)
    except BadLine as exc:
        print(f"tether eval detect: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


class BadLine(ValueError):
    """An input line that is not one judged sample."""


def _sample(line: str, number: int) -> bool:
    expected = 'expected one JSON object {"pass": true|false} per line'
    if not line.strip():
        raise BadLine(f"line {number}: empty; {expected}")
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise BadLine(f"line {number}: not JSON ({exc}); {expected}") from exc
    if not isinstance(obj, dict) or "pass" not in obj:
        raise BadLine(f"line {number}: no \"pass\" key; {expected}")
    value = obj["pass"]
    if not isinstance(value, bool):
        raise BadLine(f"line {number}: \"pass\" is {json.dumps(value)}, not true or false; "
                      f"{expected}")
    return value


def detect_stream(update: Callable[[bool], bool], lines: Iterable[str] | TextIO) -> Iterable[int]:
    """Feed each line's sample to ``update`` in order and yield the 0-based index of every
    sample that raised an alarm. Raises :class:`BadLine` (1-based line number) at the first
    line that is not a sample, blank lines included: a skipped line would shift every index."""
    for index, line in enumerate(lines):
        if update(_sample(line, index + 1)):
            yield index
