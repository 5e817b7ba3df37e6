"""The change detector (tether_eval.detect): exact run lengths, calibration checked by
simulation, state across restarts, and the ``tether eval detect`` contract (docs/evaluation.md)."""

from __future__ import annotations

import io
import json
import math
import random
import select
import statistics
import subprocess
import sys

import pytest

from tether_cli.main import main
from tether_eval.detect import Cusum, DetectorError, DetectorStateError, arl, design


def dense_arl(p: float, up: int, down: int, threshold: int) -> float:
    """An independent solve of the same chain: dense Gaussian elimination with pivoting."""
    n = threshold
    a = [[0.0] * n + [1.0] for _ in range(n)]
    for i in range(n):
        a[i][i] += 1.0
        a[i][max(0, i - down)] -= p
        if i + up < n:
            a[i][i + up] -= 1.0 - p
    for k in range(n):
        piv = max(range(k, n), key=lambda r: abs(a[r][k]))
        a[k], a[piv] = a[piv], a[k]
        for i in range(k + 1, n):
            f = a[i][k] / a[k][k]
            for j in range(k, n + 1):
                a[i][j] -= f * a[k][j]
    x = [0.0] * n
    for i in range(n - 1, -1, -1):
        x[i] = (a[i][n] - sum(a[i][j] * x[j] for j in range(i + 1, n))) / a[i][i]
    return x[0]


@pytest.mark.parametrize(("p", "up", "down", "threshold"),
                         [(0.85, 19, 4, 60), (0.5, 3, 2, 17), (0.7, 2, 5, 30), (0.9, 1, 1, 5)])
def test_banded_run_length_matches_a_dense_solve(p: float, up: int, down: int,
                                                 threshold: int) -> None:
    assert arl(p, up, down, threshold) == pytest.approx(dense_arl(p, up, down, threshold),
                                                        rel=1e-6)


def test_all_fail_run_length_is_the_steps_to_the_threshold() -> None:
    # With no passes the statistic climbs by `up` each sample: alarm at ceil(threshold / up).
    assert arl(0.0, 7, 3, 50) == pytest.approx(math.ceil(50 / 7))


ORDINARY = [(0.85, 0.05, 5000), (0.5, 0.1, 1000), (0.99, 0.01, 5000), (0.2, 0.1, 370),
            (0.78, 0.04, 5000), (0.05, 0.02, 5000), (0.85, 0.002, 5000), (0.6, 0.2, 10**7)]


@pytest.mark.parametrize(("p0", "shift", "n"), [*ORDINARY, (0.3, 0.29, 50), (0.85, 0.05, 2)])
def test_threshold_is_the_smallest_reaching_the_false_alarm_rate(p0: float, shift: float,
                                                                 n: int) -> None:
    d = design(p0, shift, n)
    assert d.arl0 == arl(p0, d.up, d.down, d.threshold)
    assert d.arl0 >= n > (arl(p0, d.up, d.down, d.threshold - 1) if d.threshold > 1 else 1)


@pytest.mark.parametrize(("p0", "shift", "n"), ORDINARY)
def test_achieved_false_alarm_spacing_is_close_to_the_one_asked(p0: float, shift: float,
                                                                n: int) -> None:
    # One threshold unit multiplies the run length by about e^(unit in nats): a few per cent,
    # unless the increments are commensurate (60 % -> 40 %: +-0.405 nats, a coarse lattice).
    d = design(p0, shift, n)
    assert d.arl0 < n * math.exp(1.5 / d.units_per_nat)


@pytest.mark.parametrize(("p0", "shift"), [(0.85, 0.05), (0.5, 0.1), (0.99, 0.01), (0.2, 0.1)])
def test_the_calibrated_detector_catches_the_drop(p0: float, shift: float) -> None:
    d = design(p0, shift, 5000)
    assert arl(d.p1, d.up, d.down, d.threshold) < d.arl0 / 5


def simulated_run_lengths(p: float, p0: float, shift: float, n: int, runs: int,
                          seed: int) -> list[int]:
    rng = random.Random(seed)
    lengths = []
    for _ in range(runs):
        cusum, count = Cusum.for_params(p0, shift, n), 1
        while not cusum.update(rng.random() < p):
            count += 1
        lengths.append(count)
    return lengths


@pytest.mark.parametrize(("p0", "shift", "n", "seed"), [(0.85, 0.05, 500, 1), (0.5, 0.1, 300, 2)])
def test_simulated_false_alarm_spacing_is_the_one_asked_for(p0: float, shift: float, n: int,
                                                           seed: int) -> None:
    lengths = simulated_run_lengths(p0, p0, shift, n, 2000, seed)
    mean = statistics.fmean(lengths)
    half = 2.58 * statistics.stdev(lengths) / math.sqrt(len(lengths))  # 99 %
    assert mean - half <= n <= mean + half
    # The test has the power to see a threshold 20 % off in either direction.
    d = design(p0, shift, n)
    for factor in (0.8, 1.2):
        off = arl(p0, d.up, d.down, round(factor * d.threshold))
        assert not mean - half <= off <= mean + half, (factor, off, mean, half)


def test_simulated_detection_delay_matches_the_exact_one() -> None:
    d = design(0.85, 0.05, 2000)
    lengths = simulated_run_lengths(0.80, 0.85, 0.05, 2000, 2000, 3)
    mean = statistics.fmean(lengths)
    half = 2.58 * statistics.stdev(lengths) / math.sqrt(len(lengths))
    assert mean - half <= arl(0.80, d.up, d.down, d.threshold) <= mean + half


@pytest.mark.parametrize(("args", "field"), [
    ((0.0, 0.05, 5000), "baseline"), ((1.0, 0.05, 5000), "baseline"),
    ((float("nan"), 0.05, 5000), "baseline"), ((0.85, 0.0, 5000), "shift"),
    ((0.85, -0.1, 5000), "shift"), ((0.85, 0.85, 5000), "shift"), ((0.85, 1e-17, 5000), "shift"),
    ((0.85, 0.05, 1), "falseAlarmEvery"), ((0.85, 0.05, 2.5), "falseAlarmEvery"),
])
def test_bad_parameters_name_the_field(args: tuple[float, float, int], field: str) -> None:
    with pytest.raises(DetectorError) as info:
        design(*args)
    assert info.value.field == field
    assert field in str(info.value)


def test_restarts_afresh_after_an_alarm() -> None:
    cusum = Cusum.for_params(0.85, 0.05, 5000)
    steps = math.ceil(cusum.design.threshold / cusum.design.up)
    fired = [i for i in range(3 * steps) if cusum.update(False)]
    assert fired == [steps - 1, 2 * steps - 1, 3 * steps - 1]
    assert cusum.statistic == 0 and cusum.alarms == 3


def test_state_saved_mid_stream_resumes_to_the_same_alarms() -> None:
    rng = random.Random(4)
    samples = [rng.random() < (0.85 if i < 3000 else 0.78) for i in range(8000)]
    straight = Cusum.for_params(0.85, 0.05, 2000)
    expected = [i for i, s in enumerate(samples) if straight.update(s)]
    assert expected, "the planted drop must alarm"
    first = Cusum.for_params(0.85, 0.05, 2000)
    got = [i for i, s in enumerate(samples[:4321]) if first.update(s)]
    saved = json.loads(json.dumps(first.to_dict()))  # as the evaluator's database holds it
    second = Cusum.from_dict(saved)
    got += [4321 + i for i, s in enumerate(samples[4321:]) if second.update(s)]
    assert got == expected
    assert (second.samples, second.alarms) == (8000, len(expected))


@pytest.mark.parametrize("change", [{"version": 2}, {"up": 18}, {"threshold": 10},
                                    {"statistic": -1}, {"statistic": 10_000}, {"samples": "x"},
                                    {"alarms": None}, {"baseline": 1.5}, {"shift": "x"}])
def test_a_state_that_does_not_fit_is_refused(change: dict[str, object]) -> None:
    state = Cusum.for_params(0.85, 0.05, 5000).to_dict()
    state.update(change)
    with pytest.raises(DetectorStateError):
        Cusum.from_dict(state)


def test_a_state_missing_a_field_is_refused() -> None:
    state = Cusum.for_params(0.85, 0.05, 5000).to_dict()
    del state["statistic"]
    with pytest.raises(DetectorStateError, match="statistic"):
        Cusum.from_dict(state)


# --- tether eval detect: the contract -------------------------------------------------------

ARGS = ["eval", "detect", "--baseline", "0.85", "--shift", "0.05", "--false-alarm-every", "1000"]


def stream(seed: int, n: int = 6000, change: int = 2000) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < (0.85 if i < change else 0.75) for i in range(n)]


def cli(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether_cli", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, check=False)


def test_cli_prints_every_alarm_of_the_evaluators_detector() -> None:
    samples = stream(5)
    detector = Cusum.for_params(0.85, 0.05, 1000)
    expected = [i for i, s in enumerate(samples) if detector.update(s)]
    assert len(expected) >= 3  # restarts afresh: several alarms after the drop
    text = "".join(json.dumps({"pass": s, "uid": f"t{i}"}) + "\n" for i, s in enumerate(samples))
    done = cli(text, *ARGS)
    assert (done.returncode, done.stderr) == (0, "")
    assert [json.loads(line) for line in done.stdout.splitlines()] == \
        [{"index": i} for i in expected]


@pytest.mark.parametrize(("bad", "why"), [("", "empty"), ("{\"pass\": 1}", "not true or false"),
                                          ("{\"ok\": true}", "no \"pass\" key"),
                                          ("pass", "not JSON"), ("[true]", "no \"pass\" key")])
def test_cli_bad_line_is_an_error_naming_the_line(bad: str, why: str) -> None:
    lines = ['{"pass": false}'] * 40 + [bad] + ['{"pass": false}'] * 40
    done = cli("\n".join(lines) + "\n", *ARGS)
    assert done.returncode == 2
    assert "line 41" in done.stderr and why in done.stderr
    # alarms before the bad line were printed (40 fails in a row alarm several times)
    indices = [json.loads(line)["index"] for line in done.stdout.splitlines()]
    assert indices and max(indices) < 40


@pytest.mark.parametrize(("flags", "named"), [
    (["--baseline", "1.2", "--shift", "0.05", "--false-alarm-every", "10"], "--baseline"),
    (["--baseline", "0.8", "--shift", "0.9", "--false-alarm-every", "10"], "--shift"),
    (["--baseline", "0.8", "--shift", "0.1", "--false-alarm-every", "1"], "--false-alarm-every"),
])
def test_cli_bad_parameters_exit_2_naming_the_flag(flags: list[str], named: str) -> None:
    done = cli("", "eval", "detect", *flags)
    assert done.returncode == 2 and named in done.stderr and done.stdout == ""


def test_cli_in_process(monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    samples = stream(6)
    detector = Cusum.for_params(0.85, 0.05, 1000)
    expected = [i for i, s in enumerate(samples) if detector.update(s)]
    text = "".join(json.dumps({"pass": s}) + "\n" for s in samples)
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert [json.loads(line)["index"] for line in out.splitlines()] == expected


def test_cli_prints_an_alarm_as_it_fires_while_input_stays_open() -> None:
    # A live feed (a tail -f of verdicts) must see the alarm without waiting for the end of input.
    d = design(0.85, 0.05, 1000)
    steps = math.ceil(d.threshold / d.up)
    with subprocess.Popen([sys.executable, "-m", "tether_cli", *ARGS], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write('{"pass": false}\n' * steps)
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no alarm line while stdin is still open"
            assert json.loads(proc.stdout.readline()) == {"index": steps - 1}
            proc.stdin.close()
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
