"""The calibrated timer: how long one call takes, measured so that neither the
clock, the loop, nor first-call costs leak into the figure.

- Warm-up calls run first and are discarded (graph tracing, kernel selection,
  allocator growth and cache filling all happen there).
- Calibration grows the calls per sample until one sample lasts at least
  ``min_sample_time``; the clock's own cost (~50 ns) is then under 0.01% of it.
  Calibration samples are discarded too.
- ``synchronize(result)`` runs before every clock reading, on the last result of the
  sample: CUDA synchronisation, or forcing a TensorFlow tensor. A sample's time
  therefore covers work that was merely queued.
- Statistics, over the per-call time of each sample (sample time / loops):
  median; stdev (sample standard deviation, n - 1); cv = stdev / mean; min; max.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_SAMPLES = 5
DEFAULT_MIN_SAMPLE_TIME = 0.01  # seconds
DEFAULT_WARMUP = 2
MAX_LOOPS = 10_000_000


@dataclass(frozen=True)
class Timing:
    """Seconds per call, one value per sample, each the mean over ``loops`` calls."""

    per_call: tuple[float, ...]
    loops: int
    warmup: int

    @property
    def median(self) -> float:
        return statistics.median(self.per_call)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.per_call) if len(self.per_call) > 1 else 0.0

    @property
    def cv(self) -> float:
        return self.stdev / statistics.fmean(self.per_call)

    @property
    def best(self) -> float:
        return min(self.per_call)


def _no_synchronize(result: Any) -> None:
    return None


def sample(call: Callable[[], Any], loops: int, synchronize: Callable[[Any], Any] = _no_synchronize,
           clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds for ``loops`` calls, synchronized before each clock reading."""
    synchronize(None)
    start = clock()
    result = None
    for _ in range(loops):
        result = call()
    synchronize(result)
    return clock() - start


def calibrate(call: Callable[[], Any], min_sample_time: float, synchronize: Callable[[Any], Any] = _no_synchronize,
              clock: Callable[[], float] = time.perf_counter) -> int:
    """The fewest calls per sample that last at least ``min_sample_time``."""
    loops = 1
    while True:
        elapsed = sample(call, loops, synchronize, clock)
        if elapsed >= min_sample_time or loops >= MAX_LOOPS:
            return loops
        # Aim 20% past the target from the rate just seen, but never grow more than
        # 100x per step: one unusually fast sample must not overshoot wildly.
        wanted = math.ceil(loops * 1.2 * min_sample_time / elapsed) if elapsed > 0 else loops * 100
        loops = min(max(wanted, loops + 1), loops * 100, MAX_LOOPS)


def measure(call: Callable[[], Any], synchronize: Callable[[Any], Any] = _no_synchronize, *,
            samples: int = DEFAULT_SAMPLES, min_sample_time: float = DEFAULT_MIN_SAMPLE_TIME,
            warmup: int = DEFAULT_WARMUP, clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``call`` (warm-up, calibration, then ``samples`` samples)."""
    if samples < 1:
        raise ValueError("samples must be at least 1")
    for _ in range(warmup):
        synchronize(call())
    loops = calibrate(call, min_sample_time, synchronize, clock)
    return Timing(tuple(sample(call, loops, synchronize, clock) / loops for _ in range(samples)), loops, warmup)


def overhead(samples: int = DEFAULT_SAMPLES, min_sample_time: float = DEFAULT_MIN_SAMPLE_TIME) -> Timing:
    """What the timer itself reports for a call that does nothing: loop and call cost."""
    return measure(_nothing, samples=samples, min_sample_time=min_sample_time)


def _nothing() -> None:
    return None
