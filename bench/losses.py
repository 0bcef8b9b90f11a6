"""asv suite: speed and accuracy of the cases of harness.running.benchgrid (loss /
framework:impl / dtype / size), so an accuracy regression shows in asv exactly
like a slowdown.

asv runs every parameter value in a fresh process, so the one parameter is the
case list itself (the seeded subset, or the whole grid with
LOSSBENCH_BENCH_FULL=1) rather than a cartesian product of dimensions that would
start a process for each combination. Impls a framework lacks, cells it cannot
run, gradients an impl lacks and accuracy beyond TRACK_MAX_SIZE raise
NotImplementedError in setup: asv shows them as skipped (n/a).
"""
from __future__ import annotations

from contextlib import ExitStack

from harness.running import benchgrid, benchrun

PARAMS = [[case.id for case in benchgrid.cases()]]
PARAM_NAMES = ["case"]


class _Timed:
    params = PARAMS
    param_names = PARAM_NAMES
    gradient = False
    # Loss calls take microseconds to tens of milliseconds: asv's defaults (10 ms
    # samples) already hide the clock; keep repeats bounded on big cases.
    repeat = (3, 10, 10.0)
    warmup_time = 0.2

    def setup(self, case: str) -> None:
        self.stack = ExitStack()  # asv tears down skipped cases too
        self.prepared = benchrun.prepare(benchgrid.BenchCase.from_id(case), gradient=self.gradient)
        self.stack.enter_context(self.prepared.context())

    def teardown(self, case: str) -> None:
        self.stack.close()

    def _call(self) -> None:
        self.prepared.synchronize(self.prepared.call())


class Forward(_Timed):
    """The loss at its default reduction (the mean; the sum for penalties)."""

    def time_forward(self, case: str) -> None:
        self._call()

    def peakmem_forward(self, case: str) -> None:
        self._call()


class Backward(_Timed):
    """Forward and the gradient with respect to input (torch autograd,
    tf.GradientTape, NumPy's analytic gradient of the stable impl)."""

    gradient = True

    def time_backward(self, case: str) -> None:
        self._call()

    def peakmem_backward(self, case: str) -> None:
        self._call()


class Accuracy:
    """Element-wise accuracy on the typical inputs, against the certified reference."""

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 1800  # the first run computes the references (cached afterwards)

    def setup(self, case: str) -> None:
        self.task = benchrun.accuracy_task(benchgrid.BenchCase.from_id(case))

    def track_max_ulp(self, case: str) -> float:
        return benchrun.accuracy(self.task).max_ulp

    track_max_ulp.unit = "ulp"  # type: ignore[attr-defined]

    def track_unexpected_nonfinite(self, case: str) -> int:
        return benchrun.accuracy(self.task).unexpected_nonfinite

    track_unexpected_nonfinite.unit = "elements"  # type: ignore[attr-defined]
