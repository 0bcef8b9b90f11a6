"""The calibrated timer on functions of known cost (a fake clock makes the cost
exact; a spin loop makes it real). Nothing here times a loss."""
from __future__ import annotations

import math
import time

import pytest

from harness.measure import timing


class FakeClock:
    """A clock that moves only when the code under test spends time on purpose."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_known_cost_is_measured_exactly_and_samples_are_long_enough() -> None:
    clock = FakeClock()

    def call() -> None:
        clock.now += 3e-6

    timed = timing.measure(call, samples=5, min_sample_time=0.01, warmup=2, clock=clock)
    assert len(timed.per_call) == 5
    assert timed.median == pytest.approx(3e-6, rel=1e-9)
    assert timed.loops * 3e-6 >= 0.01  # the clock's own cost is negligible against a sample
    assert timed.loops * 3e-6 < 0.01 * 1.2 * 1.01 + 3e-6  # and calibration does not overshoot wildly


def test_warmup_calls_are_run_and_excluded() -> None:
    clock, calls = FakeClock(), []

    def call() -> None:
        calls.append(1)
        clock.now += 5.0 if len(calls) <= 3 else 1e-5  # first calls: tracing, compilation

    timed = timing.measure(call, samples=3, min_sample_time=1e-3, warmup=3, clock=clock)
    assert timed.warmup == 3 and max(timed.per_call) == pytest.approx(1e-5)


def test_synchronize_runs_before_each_clock_reading_and_counts_queued_work() -> None:
    """Like a CUDA stream: calls only queue work; synchronizing waits for it to finish."""
    clock, queued, synchronized = FakeClock(), [], []

    def call() -> int:
        queued.append(2e-6)
        return len(queued)

    def synchronize(result: int | None) -> None:
        synchronized.append(result)
        clock.now += sum(queued)
        queued.clear()

    timed = timing.measure(call, synchronize, samples=4, min_sample_time=1e-3, warmup=1, clock=clock)
    assert timed.median == pytest.approx(2e-6)
    # Per sample: synchronize(None) before the start reading, synchronize(last result) before the end reading.
    # After the warm-up call's synchronize: (None, last result) for every calibration sample and sample.
    pairs = synchronized[1:]
    assert len(pairs) % 2 == 0 and len(pairs) // 2 > len(timed.per_call)
    assert all(start is None and isinstance(end, int) for start, end in zip(pairs[::2], pairs[1::2]))


def test_statistics_follow_their_formulas() -> None:
    timed = timing.Timing(per_call=(1.0, 2.0, 3.0, 4.0, 10.0), loops=1, warmup=0)
    # mean 4; squared deviations 9 + 4 + 1 + 0 + 36 = 50; sample variance 50 / 4.
    assert (timed.median, timed.best) == (3.0, 1.0)
    assert timed.stdev == pytest.approx(math.sqrt(12.5))
    assert timed.cv == pytest.approx(math.sqrt(12.5) / 4)


def test_real_spin_loop_of_known_cost() -> None:
    cost = 200e-6

    def spin() -> None:
        end = time.perf_counter() + cost
        while time.perf_counter() < end:
            pass

    timed = timing.measure(spin, samples=5, min_sample_time=0.005)
    assert cost <= timed.median < 5 * cost  # never less than the spin; load may add, not halve


def test_overhead_of_an_empty_call_is_small_and_positive() -> None:
    overhead = timing.overhead().median
    assert 0 < overhead < 5e-6


def test_samples_must_be_positive() -> None:
    with pytest.raises(ValueError, match="samples"):
        timing.measure(lambda: None, samples=0)
