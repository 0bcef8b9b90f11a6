"""Fidelity of lossbench's timer (harness.measure.timing), three figures:

1. against torch.utils.benchmark.Timer(...).blocked_autorange() on the same call
   (torch native mse and cross_entropy, float32, 1e3 and 1e6 elements): ratio of
   medians, measured alternately so drift hits both;
2. run-to-run spread of the same cell: coefficient of variation of the medians of
   RUNS independent measurements;
3. timer overhead: the timer's figure for a call that does nothing, next to a
   10-element mse call.

    .venv/bin/python bench/timer_fidelity.py [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.utils.benchmark as torch_benchmark

from harness.measure import timing
from harness.running.benchgrid import BenchCase
from harness.running.benchrun import prepare

CASES = [BenchCase(loss, "torch:native", "float32", size)
         for loss in ("mse", "cross_entropy") for size in (1_000, 1_000_000)]


def torch_median(call: object, min_run_time: float) -> float:
    timer = torch_benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="independent measurements per cell (default 5)")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="blocked_autorange's budget (default 0.2 s)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians in microseconds")
    print(f"{'case':36} {'lossbench':>10} {'torch Timer':>12} {'ratio':>6} {'cv lossbench':>13} {'cv Timer':>9}")
    for case in CASES:
        prepared = prepare(case)
        ours, theirs = [], []
        with prepared.context():
            for _ in range(args.runs):
                ours.append(timing.measure(prepared.call, prepared.synchronize).median)
                theirs.append(torch_median(prepared.call, args.min_run_time))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{case.id:36} {a * 1e6:10.2f} {b * 1e6:12.2f} {a / b:6.3f} "
              f"{statistics.stdev(ours) / statistics.fmean(ours):13.2%} "
              f"{statistics.stdev(theirs) / statistics.fmean(theirs):9.2%}")
    nothing = [timing.overhead().median for _ in range(args.runs)]
    tiny = prepare(BenchCase("mse", "torch:native", "float32", 10))
    with tiny.context():
        ten = [timing.measure(tiny.call, tiny.synchronize).median for _ in range(args.runs)]
    print(f"timer overhead (a call doing nothing): {statistics.median(nothing) * 1e9:.1f} ns per call; "
          f"mse torch float32 on 10 elements: {statistics.median(ten) * 1e6:.2f} us per call "
          f"(overhead {statistics.median(nothing) / statistics.median(ten):.3%} of it)")


if __name__ == "__main__":
    main()
