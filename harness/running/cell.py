"""The worker side of a sweep: one planned cell measured, one outcome returned.

A cell is a loss x framework x impl x dtype x device x input set x size; its task
says what is still missing in the store (the value row, the gradient row, the
timing), decided once when the sweep is planned. The job a worker receives is
that task plus what the parent learnt before running it: where the references
are, the time limit, and the device's measured bandwidth.
"""
from __future__ import annotations

import functools
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import adapters
from harness.adapters.base import Output, error_line
from harness.measure import bandwidth, metrics, timing
from harness.measure.quantity import VALUE, LossGradient, LossValue, ValueReference, gradient_of
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import GradArrays, InputSet, RefArrays
from harness.model import registry
from harness.model.spec import LossSpec
from harness.store import CellKey, CellRow, GradientRow

DEFAULT_CELL_TIMEOUT = 300.0


@dataclass(frozen=True)
class CellTask:
    """One planned cell and what to measure of it: ``value`` (its value row),
    ``grad`` (its gradient row), ``time`` (timing columns with the value row)."""

    inputset: InputSet
    size: int
    framework: str
    framework_version: str
    impl: str
    device: str
    value: bool = True
    grad: bool = False
    time: bool = False
    mode: str = "eager"

    def key(self) -> CellKey:
        s = self.inputset
        return CellKey(s.loss, json.dumps(dict(s.params), sort_keys=True), self.framework, self.framework_version,
                       self.impl, s.dtype, self.device, s.regime, self.size, s.width, s.seed, self.mode)


@dataclass(frozen=True)
class CellJob:
    """A task as a worker runs it. ``gradient_reference`` is None when the gradient
    is not to be measured (not asked, or its reference could not be computed)."""

    task: CellTask
    value_reference: str | None  # a file in the cache (on a Dask worker, the worker's copy of it)
    gradient_reference: str | None
    timeout: float
    bandwidth_limit: float | None = None  # GB/s of this device, for timed cells
    # Threads the value and gradient are measured with (None: the process's own). A
    # sweep gives every cell its workers' count, so that a timed cell, measured in
    # the timing worker with every core's threads, reduces the way the others do.
    threads: int | None = None

    @classmethod
    def of(cls, task: CellTask, cache: ReferenceCache, timeout: float, bandwidth_limit: float | None = None,
           value: LossValue = VALUE, gradient: LossGradient | None = None, threads: int | None = None) -> CellJob:
        """The job reading ``value``'s reference and, unless None, ``gradient``'s
        (default: the default engine's gradient of the loss)."""
        s = task.inputset
        gradient = gradient or gradient_of(s.loss)
        return cls(task, str(cache.path(s, value)) if task.value else None,
                   str(cache.path(s, gradient)) if task.grad else None,
                   timeout, bandwidth_limit, threads)


@dataclass(frozen=True)
class CellOutcome:
    """What one cell task stores: its value row and its gradient row, each when asked."""

    value: CellRow | None
    gradient: GradientRow | None = None

    @classmethod
    def failed(cls, task: CellTask, status: str, error: str, seconds: float | None = None) -> CellOutcome:
        """The same failure for the value and the gradient, each when asked."""
        return cls(CellRow(task.key(), status, error=error, seconds=seconds) if task.value else None,
                   GradientRow(task.key(), status, error=error) if task.grad else None)


class CellTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise CellTimeout()


@functools.lru_cache(maxsize=8)
def _value_reference(reference: str) -> ValueReference:
    return ReferenceCache.read(Path(reference), VALUE)


@functools.lru_cache(maxsize=8)
def _gradient_reference(reference: str, loss: str) -> dict[int, GradArrays]:
    return ReferenceCache.read(Path(reference), gradient_of(loss))


@functools.lru_cache(maxsize=4)
def _inputs(inputset: InputSet, size: int) -> dict[str, np.ndarray]:
    """Cells of one set and size run one after another: generate their input once."""
    return inputset.inputs(size)


def summary(values: np.ndarray, ref: RefArrays, dtype: str, defined: np.ndarray | None = None) -> dict[str, Any]:
    """Error summary over the items with a settled reference and a finite result
    (and, for a gradient, a derivative: ``defined``); non-finite classes counted apart."""
    codes = metrics.classify_many(values, ref.hi, ref.rounded)
    if defined is not None:
        codes = np.where(defined, codes, 0)
    measured = (codes == 0) & ref.settled
    if defined is not None:
        measured &= defined
    ulps = metrics.ulp_errors(values, ref.hi, ref.lo, dtype)[measured]
    rels = metrics.relative_errors(values, ref.hi, ref.lo)[measured]
    bits = metrics.bits_errors(values, ref.rounded, dtype)[measured]
    counts = metrics.count_classes(codes)
    expected = counts[metrics.EXPECTED_INF] + counts[metrics.EXPECTED_NAN]
    return {
        "items_measured": int(measured.sum()),
        "max_ulp": float(ulps.max()) if ulps.size else None,
        # Nearest-rank percentiles: errors beyond float64 are inf, and interpolating inf - inf is nan.
        "p99_ulp": float(np.percentile(ulps, 99, method="nearest")) if ulps.size else None,
        "median_ulp": float(np.percentile(ulps, 50, method="nearest")) if ulps.size else None,
        "max_rel": float(rels.max()) if rels.size else None,
        "max_bits": float(bits.max()) if bits.size else None,
        "nonfinite": json.dumps({k: v for k, v in counts.items() if v}),
        "unexpected_nonfinite": int(sum(counts.values()) - expected),
    }


def run_cell(job: CellJob) -> CellOutcome:
    """Measure one cell (runs in a worker). Only the framework's calls are the
    cell's result: reading the references and making the inputs come first,
    and an exception there is lossbench's, raised to the parent, never stored."""
    started = time.perf_counter()
    task = job.task
    s = task.inputset
    spec = registry.get(s.loss)
    adapter = adapters.load(task.framework)
    arrays = _inputs(s, task.size)
    params = dict(s.params)
    value_reference = _value_reference(job.value_reference) if job.value_reference is not None else None
    gradient_reference = (_gradient_reference(job.gradient_reference, spec.name)[task.size]
                          if job.gradient_reference is not None else None)
    gradient = None
    try:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, job.timeout)
        try:
            # Compile times first: they empty the compiler's caches, and what is compiled
            # after them (the calls below, then the timed ones) is compiled once.
            compiled = _compile_times(adapter, spec, task, arrays, params) if task.time else {}
            with adapter.threads(job.threads):
                if gradient_reference is not None:
                    gradient = _gradient_row(adapter, spec, task, arrays, params, gradient_reference)
                if value_reference is None:
                    return CellOutcome(None, gradient)
                per_item = adapter.run(spec, task.impl, arrays, s.dtype, task.device, "none", params, mode=task.mode)
                reduced = adapter.run(spec, task.impl, arrays, s.dtype, task.device, spec.default_reduction, params,
                                      mode=task.mode)
            timed = {**compiled, **_time_cell(adapter, spec, job, arrays, params)} if task.time else {}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    except CellTimeout:
        return CellOutcome.failed(task, "timeout", f"exceeded the {job.timeout:g} s cell limit",
                                  time.perf_counter() - started)
    except Exception as exc:  # the framework raised: a result, not a crash
        if task.grad and gradient is None:  # it raised compiling, before the gradient's turn
            gradient = GradientRow(task.key(), "error", error=error_line(exc))
        if not task.value:
            return CellOutcome(None, gradient)
        return CellOutcome(CellRow(task.key(), "error", error=error_line(exc),
                                   seconds=time.perf_counter() - started), gradient)
    return CellOutcome(_value_row(task, spec, per_item, reduced, value_reference, timed, started), gradient)


def _value_row(task: CellTask, spec: LossSpec, per_item: Output, reduced: Output, reference: ValueReference,
               timed: dict[str, Any], started: float) -> CellRow:
    key, s = task.key(), task.inputset
    count = s.items(task.size)
    items_ref = reference.items[:count]
    if per_item.values.shape != (count,) or reduced.values.shape != (1,):
        return CellRow(key, "error", result_dtype=per_item.result_dtype, seconds=time.perf_counter() - started,
                       error=f"framework returned {per_item.values.shape[0]} values for {count} items")
    # A reference shorter than the cell (SweepConfig.reference_size) measures its first items.
    element = summary(per_item.values[:len(items_ref)], items_ref, s.dtype)
    reduced_ref = reference.reduced.get((task.size, spec.default_reduction))
    if reduced_ref is None:
        return CellRow(key, "ok", result_dtype=per_item.result_dtype, items=count, **element,
                       reduced_value=float(reduced.values[0]), ref_unsettled=int((~items_ref.settled).sum()),
                       seconds=time.perf_counter() - started, **timed)
    reduced_code = metrics.classify_many(reduced.values, reduced_ref.hi, reduced_ref.rounded)
    reduced_ok = reduced_code[0] == 0 and bool(reduced_ref.settled[0])
    return CellRow(
        key, "ok", result_dtype=per_item.result_dtype, items=count, **element,
        reduced_value=float(reduced.values[0]), reduced_reference=float(reduced_ref.hi[0]),
        reduced_ulp=float(metrics.ulp_errors(reduced.values, reduced_ref.hi, reduced_ref.lo, s.dtype)[0])
        if reduced_ok else None,
        reduced_rel=float(metrics.relative_errors(reduced.values, reduced_ref.hi, reduced_ref.lo)[0])
        if reduced_ok else None,
        reduced_bits=float(metrics.bits_errors(reduced.values, reduced_ref.rounded, s.dtype)[0]) if reduced_ok else None,
        reduced_nonfinite=metrics.class_names(reduced_code)[0],
        ref_unsettled=int((~items_ref.settled).sum() + (~reduced_ref.settled).sum()),
        seconds=time.perf_counter() - started, **timed,
    )


def _gradient_row(adapter: adapters.Adapter, spec: LossSpec, task: CellTask, arrays: dict[str, np.ndarray],
                  params: dict[str, float], reference: GradArrays) -> GradientRow:
    """The gradient of the default-reduction loss against the set's reference gradient."""
    reduction = spec.default_reduction
    key = task.key()
    if adapter.gradient(spec, task.impl) is None:
        return GradientRow(key, "no_gradient", reduction=reduction, method="none")
    method = adapter.gradient_method
    try:
        output = adapter.run(spec, task.impl, arrays, task.inputset.dtype, task.device, reduction, params,
                             gradient=True, mode=task.mode)
    except CellTimeout:
        raise
    except Exception as exc:  # the gradient raised: a result, not a crash
        return GradientRow(key, "error", reduction=reduction, method=method, error=error_line(exc))
    if output.values.shape != reference.defined.shape:
        return GradientRow(key, "error", reduction=reduction, method=method, result_dtype=output.result_dtype,
                           error=f"gradient has {output.values.size} elements, the input {reference.defined.size}")
    found = summary(output.values, reference.ref, task.inputset.dtype, reference.defined)
    return GradientRow(
        key, "ok", reduction=reduction, method=method, result_dtype=output.result_dtype,
        elements=int(reference.defined.size), elements_measured=found.pop("items_measured"),
        undefined=int((~reference.defined).sum()),
        ref_unsettled=int((~reference.ref.settled & reference.defined).sum()), **found,
    )


def _compile_times(adapter: adapters.Adapter, spec: LossSpec, task: CellTask, arrays: dict[str, np.ndarray],
                   params: dict[str, float]) -> dict[str, Any]:
    """The compile-time columns of a compiled cell (see Adapter.compile_seconds)."""
    if task.mode != "compiled":
        return {}
    cold, warm = adapter.compile_seconds(spec, task.impl, arrays, task.inputset.dtype, task.device,
                                         spec.default_reduction, params)
    return {"compile_cold_seconds": cold, "compile_warm_seconds": warm}


def _time_cell(adapter: adapters.Adapter, spec: LossSpec, job: CellJob, arrays: dict[str, np.ndarray],
               params: dict[str, float]) -> dict[str, Any]:
    """Timing columns of a cell: the default reduction forward, and its gradient
    with respect to input where the impl has one."""
    task, limit = job.task, job.bandwidth_limit

    def timed(gradient: bool) -> tuple[timing.Timing, int]:
        prepared = adapter.prepare(spec, task.impl, arrays, task.inputset.dtype, task.device, spec.default_reduction,
                                   params, gradient=gradient, mode=task.mode)
        with prepared.context():
            return timing.measure(prepared.call, prepared.synchronize), prepared.bytes_moved

    forward, moved = timed(False)
    rate = bandwidth.gbps(moved, forward.median)
    fields: dict[str, Any] = {
        "forward_seconds": forward.median, "forward_stdev": forward.stdev, "forward_loops": forward.loops,
        "forward_samples": len(forward.per_call), "forward_bytes": moved, "elements_per_s": task.size / forward.median,
        "forward_gbps": rate, "forward_bw_fraction": bandwidth.fraction(rate, limit), "bandwidth_limit_gbps": limit,
        "backward_method": "none",
    }
    if adapter.gradient(spec, task.impl) is None:
        return fields
    fields["backward_method"] = adapter.gradient_method
    try:
        backward, moved = timed(True)
    except CellTimeout:
        raise
    except Exception as exc:  # the gradient failed; the forward figures stand
        fields["backward_error"] = error_line(exc)
        return fields
    rate = bandwidth.gbps(moved, backward.median)
    fields.update(backward_seconds=backward.median, backward_stdev=backward.stdev, backward_loops=backward.loops,
                  backward_bytes=moved, backward_gbps=rate, backward_bw_fraction=bandwidth.fraction(rate, limit))
    return fields


def measure_bandwidth(target: tuple[str, str]) -> list[bandwidth.StreamResult]:
    """STREAM kernels of one (framework, device) (runs in a worker)."""
    framework, device = target
    return bandwidth.measure(adapters.load(framework), device)
