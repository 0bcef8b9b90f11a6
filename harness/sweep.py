"""Sweeps: every selected cell measured against its shared reference.

The parent process plans, schedules and stores; frameworks run only in worker
processes (spawned, so TensorFlow and torch never share a forked state). A cell
that raises becomes an error row, one that overruns the per-cell limit a
timeout row, and one whose worker dies a crashed row; the sweep goes on. Rows
are committed as they arrive, and cells already in the store are skipped, so a
killed sweep rerun with the same configuration completes without losing or
duplicating anything.

With ``grad``, every cell (of ``grad_regimes``, default all) also measures the
gradient of its default-reduction loss with respect to input against the set's
reference gradient (stored in the gradients table); a cell stored without it
is completed.

With ``time``, cells of the timed regimes are also timed (harness.timing), one
cell at a time in a single worker holding every core, after the machine's
memory bandwidth is measured (harness.bandwidth) and stored with the run. An
untimed cell already stored is measured again and completed with its timing.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import adapters, bandwidth, metrics, regimes, registry, timing
from harness.adapters.base import Output, cpu_model, error_line
from harness.refsets import (
    ChunkResult, GradArrays, GradientChunk, InputSet, ReferenceCache, RefArrays, SetReference, assemble,
    assemble_gradient, chunk_tasks, settle_chunk,
)
from harness.spec import DTYPES, LossSpec
from harness.store import CellKey, CellRow, GradientRow, Store
from harness.workers import Failure, WorkerPool

QUICK_SIZES = (10, 100, 1_000, 10_000, 100_000)
FULL_SIZES = (*QUICK_SIZES, 1_000_000, 10_000_000)
QUICK_WIDTHS = (regimes.DEFAULT_WIDTH,)
FULL_WIDTHS = (regimes.DEFAULT_WIDTH, 1000)
DEFAULT_CELL_TIMEOUT = 300.0
# Speed hardly depends on values, except where subnormals slow a CPU down; time
# the typical inputs unless asked for more.
DEFAULT_TIMED_REGIMES = ("typical",)


@dataclass(frozen=True)
class SweepConfig:
    losses: tuple[str, ...]
    frameworks: tuple[str, ...]
    impls: tuple[str, ...] | None
    dtypes: tuple[str, ...]
    devices: tuple[str, ...]
    regimes: tuple[str, ...] | None  # None: every regime each loss declares
    sizes: tuple[int, ...]
    widths: tuple[int, ...]
    seeds: int = 1
    jobs: int = 1
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    time: bool = False
    timed_regimes: tuple[str, ...] = DEFAULT_TIMED_REGIMES
    grad: bool = False
    grad_regimes: tuple[str, ...] | None = None  # None: every regime the sweep runs

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CellTask:
    inputset: InputSet
    size: int
    framework: str
    framework_version: str
    impl: str
    device: str
    reference_path: str
    timeout: float
    time: bool = False
    bandwidth_limit: float | None = None  # GB/s of this device, for timed cells
    grad: bool = False
    gradient_path: str = ""  # the set's reference gradient under the loss's default reduction
    value: bool = True  # measure the value row (False when only the gradient is missing)

    def key(self) -> CellKey:
        s = self.inputset
        return CellKey(s.loss, json.dumps(dict(s.params), sort_keys=True), self.framework, self.framework_version,
                       self.impl, s.dtype, self.device, s.regime, self.size, s.width, s.seed)


@dataclass
class SweepReport:
    run_id: int
    planned: int
    skipped: int
    stored: int
    statuses: dict[str, int] = field(default_factory=dict)
    reference_sets: int = 0
    reference_cached: int = 0
    reference_seconds: float = 0.0
    cell_seconds: float = 0.0
    timed: int = 0
    gradients: int = 0  # gradient rows stored
    bandwidth_limits: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


# --- worker side -----------------------------------------------------------------

def describe_frameworks(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What each framework offers here (runs in a worker so the parent imports none)."""
    info: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            adapter = adapters.load(name)
        except adapters.FrameworkUnavailable as exc:
            info[name] = {"available": False, "reason": str(exc)}
            continue
        info[name] = {"available": True, "version": adapter.version(), "devices": adapter.devices(),
                      "impls": {loss: adapter.impl_names(loss) for loss in registry.names()},
                      "device_names": {device: adapter.device_name(device) for device in adapter.devices()}}
    return info


class CellTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise CellTimeout()


@functools.lru_cache(maxsize=8)
def _reference(path: str) -> SetReference:
    return ReferenceCache.read(Path(path))


@functools.lru_cache(maxsize=8)
def _gradient_reference(path: str) -> dict[int, GradArrays]:
    return ReferenceCache.read_gradient(Path(path))


@functools.lru_cache(maxsize=4)
def _inputs(inputset: InputSet, size: int) -> dict[str, np.ndarray]:
    """Cells of one set and size run one after another: generate their input once."""
    return inputset.inputs(size)


def _summary(values: np.ndarray, ref: RefArrays, dtype: str, defined: np.ndarray | None = None) -> dict[str, Any]:
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
    counts = metrics.count_classes(codes)
    expected = counts[metrics.EXPECTED_INF] + counts[metrics.EXPECTED_NAN]
    return {
        "items_measured": int(measured.sum()),
        "max_ulp": float(ulps.max()) if ulps.size else None,
        # Nearest-rank percentiles: errors beyond float64 are inf, and interpolating inf - inf is nan.
        "p99_ulp": float(np.percentile(ulps, 99, method="nearest")) if ulps.size else None,
        "median_ulp": float(np.percentile(ulps, 50, method="nearest")) if ulps.size else None,
        "max_rel": float(rels.max()) if rels.size else None,
        "nonfinite": json.dumps({k: v for k, v in counts.items() if v}),
        "unexpected_nonfinite": int(sum(counts.values()) - expected),
    }


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


def run_cell(task: CellTask) -> CellOutcome:
    """Measure one cell (runs in a worker)."""
    started = time.perf_counter()
    key = task.key()
    s = task.inputset
    gradient = None
    try:
        spec = registry.get(s.loss)
        adapter = adapters.load(task.framework)
        arrays = _inputs(s, task.size)
        params = dict(s.params)
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, task.timeout)
        try:
            if task.grad:
                gradient = _gradient_row(adapter, spec, task, arrays, params)
            if not task.value:
                return CellOutcome(None, gradient)
            reference = _reference(task.reference_path)
            per_item = adapter.run(spec, task.impl, arrays, s.dtype, task.device, "none", params)
            reduced = adapter.run(spec, task.impl, arrays, s.dtype, task.device, spec.default_reduction, params)
            timed = _time_cell(adapter, spec, task, arrays, params) if task.time else {}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    except CellTimeout:
        return CellOutcome.failed(task, "timeout", f"exceeded the {task.timeout:g} s cell limit",
                                  time.perf_counter() - started)
    except Exception as exc:  # the framework raised: a result, not a crash
        if not task.value:
            return CellOutcome(None, gradient or GradientRow(key, "error", error=error_line(exc)))
        return CellOutcome(CellRow(key, "error", error=error_line(exc), seconds=time.perf_counter() - started),
                           gradient)
    count = s.items(task.size)
    return CellOutcome(_value_row(task, spec, per_item, reduced, reference, count, timed, started), gradient)


def _value_row(task: CellTask, spec: LossSpec, per_item: Output, reduced: Output,
               reference: SetReference, count: int, timed: dict[str, Any], started: float) -> CellRow:
    key, s = task.key(), task.inputset
    items_ref = reference.items[:count]
    if per_item.values.shape != (count,) or reduced.values.shape != (1,):
        return CellRow(key, "error", result_dtype=per_item.result_dtype, seconds=time.perf_counter() - started,
                       error=f"framework returned {per_item.values.shape[0]} values for {count} items")
    element = _summary(per_item.values, items_ref, s.dtype)
    reduced_ref = reference.reduced[(task.size, spec.default_reduction)]
    reduced_code = metrics.classify_many(reduced.values, reduced_ref.hi, reduced_ref.rounded)
    reduced_ok = reduced_code[0] == 0 and bool(reduced_ref.settled[0])
    return CellRow(
        key, "ok", result_dtype=per_item.result_dtype, items=count, **element,
        reduced_value=float(reduced.values[0]), reduced_reference=float(reduced_ref.hi[0]),
        reduced_ulp=float(metrics.ulp_errors(reduced.values, reduced_ref.hi, reduced_ref.lo, s.dtype)[0])
        if reduced_ok else None,
        reduced_rel=float(metrics.relative_errors(reduced.values, reduced_ref.hi, reduced_ref.lo)[0])
        if reduced_ok else None,
        reduced_nonfinite=metrics.class_names(reduced_code)[0],
        ref_unsettled=int((~items_ref.settled).sum() + (~reduced_ref.settled).sum()),
        seconds=time.perf_counter() - started, **timed,
    )


def _gradient_row(adapter: adapters.Adapter, spec: LossSpec, task: CellTask, arrays: dict[str, np.ndarray],
                  params: dict[str, float]) -> GradientRow:
    """The gradient of the default-reduction loss against the set's reference gradient."""
    key, s, reduction = task.key(), task.inputset, spec.default_reduction
    if adapter.gradient(spec, task.impl) is None:
        return GradientRow(key, "no_gradient", reduction=reduction, method="none")
    method = adapter.gradient_method
    try:
        output = adapter.run(spec, task.impl, arrays, s.dtype, task.device, reduction, params, gradient=True)
    except CellTimeout:
        raise
    except Exception as exc:  # the gradient raised: a result, not a crash
        return GradientRow(key, "error", reduction=reduction, method=method, error=error_line(exc))
    reference = _gradient_reference(task.gradient_path)[task.size]
    if output.values.shape != reference.defined.shape:
        return GradientRow(key, "error", reduction=reduction, method=method, result_dtype=output.result_dtype,
                           error=f"gradient has {output.values.size} elements, the input {reference.defined.size}")
    summary = _summary(output.values, reference.ref, s.dtype, reference.defined)
    return GradientRow(
        key, "ok", reduction=reduction, method=method, result_dtype=output.result_dtype,
        elements=int(reference.defined.size), elements_measured=summary.pop("items_measured"),
        undefined=int((~reference.defined).sum()),
        ref_unsettled=int((~reference.ref.settled & reference.defined).sum()), **summary,
    )


def _time_cell(adapter: adapters.Adapter, spec: LossSpec, task: CellTask, arrays: dict[str, np.ndarray],
               params: dict[str, float]) -> dict[str, Any]:
    """Timing columns of a cell: the default reduction forward, and its gradient
    with respect to input where the impl has one."""
    s, limit = task.inputset, task.bandwidth_limit

    def timed(gradient: bool) -> tuple[timing.Timing, int]:
        prepared = adapter.prepare(spec, task.impl, arrays, s.dtype, task.device, spec.default_reduction, params,
                                   gradient=gradient)
        with prepared.context():
            return timing.measure(prepared.call, prepared.settle), prepared.bytes_moved

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


# --- parent side -----------------------------------------------------------------

def environment(info: dict[str, dict[str, Any]], config: SweepConfig, threads: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "jobs": config.jobs,
        "threads_per_worker": threads,
        "timing_threads": (os.cpu_count() or 1) if config.time else None,
        "frameworks": {name: {k: v for k, v in d.items() if k != "impls"} for name, d in info.items()},
    }


def input_sets(config: SweepConfig) -> list[InputSet]:
    sets = []
    for loss in config.losses:
        chosen = [r for r in registry.get(loss).regimes if config.regimes is None or r in config.regimes]
        for dtype in config.dtypes:
            for regime in chosen:
                for seed in range(config.seeds):
                    # dict.fromkeys: an element-wise loss has one set whatever the widths
                    sets.extend(dict.fromkeys(InputSet.with_defaults(loss, dtype, regime, seed, w)
                                              for w in config.widths))
    return sets


def sizes_for(inputset: InputSet, config: SweepConfig) -> list[int]:
    """Sizes of this set: whole rows only, at least one row."""
    return [n for n in config.sizes if n >= inputset.width]


def plan(config: SweepConfig, info: dict[str, dict[str, Any]], cache: ReferenceCache) -> list[CellTask]:
    tasks = []
    for inputset in input_sets(config):
        for size in sizes_for(inputset, config):
            for framework in config.frameworks:
                fw = info[framework]
                if not fw["available"]:
                    continue
                for impl in fw["impls"].get(inputset.loss, []):
                    if config.impls is not None and impl not in config.impls:
                        continue
                    for device in config.devices:
                        if device in fw["devices"]:
                            tasks.append(CellTask(
                                inputset, size, framework, fw["version"], impl, device, str(cache.path(inputset)),
                                config.cell_timeout, time=config.time and inputset.regime in config.timed_regimes,
                                grad=config.grad and (config.grad_regimes is None
                                                      or inputset.regime in config.grad_regimes),
                                gradient_path=str(cache.path(inputset, _gradient_of(inputset)))))
    return tasks


def _gradient_of(inputset: InputSet) -> str:
    """The reduction whose gradient a set's cells measure: the loss's default."""
    return registry.get(inputset.loss).default_reduction


# Grace beyond the in-worker limit before a stuck worker (inside C code) is killed,
# generous because a fresh worker first imports its framework.
HARD_LIMIT_GRACE = 120.0
# A reference chunk (CHUNK items) takes seconds; one taking an hour is stuck.
REFERENCE_CHUNK_LIMIT = 3600.0


def run_sweep(config: SweepConfig, store: Store, cache: ReferenceCache,
              progress: Callable[..., Any] | None = None) -> SweepReport:
    """Run (or resume) a sweep. ``progress(total=, desc=, unit=)`` returns an object
    with update(n) and close(), like tqdm."""
    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    run_id = None
    with WorkerPool(config.jobs, threads) as pool:
        try:
            ((_, info),) = list(pool.run(describe_frameworks, [config.frameworks]))
            if isinstance(info, Failure):
                raise RuntimeError(f"could not start a worker: {info.message}")
            run_id = store.start_run(config.describe(), environment(info, config, threads))
            tasks = plan(config, info, cache)
            pending = _pending(tasks, store)
            report = SweepReport(run_id, len(tasks), len(tasks) - len(pending), 0,
                                 unavailable={n: d["reason"] for n, d in info.items() if not d["available"]})
            started = time.perf_counter()
            failed_refs = _references(pending, config, cache, pool, report, progress)
            report.reference_seconds = time.perf_counter() - started
            started = time.perf_counter()
            if any(t.time for t in pending):
                pool.close()  # timed cells get the machine to themselves: one worker, every core
                with WorkerPool(1, os.cpu_count() or 1) as timing_pool:
                    pending = _with_bandwidth(pending, timing_pool, store, report, progress)
                    _cells(pending, failed_refs, timing_pool, store, report, progress)
            else:
                _cells(pending, failed_refs, pool, store, report, progress)
            report.cell_seconds = time.perf_counter() - started
            store.end_run(run_id, "complete")
            return report
        except BaseException:
            if run_id is not None:
                store.end_run(run_id, "interrupted")
            raise


def _pending(tasks: list[CellTask], store: Store) -> list[CellTask]:
    """The tasks with something left to store, each asked only for what is missing
    (a stored cell is neither measured nor timed again, a stored gradient not
    measured again; a stored untimed cell to be timed is measured whole)."""
    done, gradients_done = store.existing_keys(), store.existing_gradient_keys()
    pending = []
    for t in tasks:
        key = t.key()
        time_it = t.time and not done.get(key, False)
        grad = t.grad and key not in gradients_done
        value = key not in done or time_it  # a timed row replaces the whole untimed one
        if value or grad:
            pending.append(dataclasses.replace(t, time=time_it, grad=grad, value=value))
    return pending


# A set reference: of the loss values (None) or of the gradient under a reduction.
RefKey = tuple[InputSet, str | None]


def _references(pending: list[CellTask], config: SweepConfig, cache: ReferenceCache, pool: WorkerPool,
                report: SweepReport, progress: Callable[..., Any] | None) -> dict[RefKey, str]:
    """Compute every missing set reference and reference gradient, chunks of all
    sets in parallel; returns those that failed, with why."""
    needed: dict[RefKey, list[int]] = {(t.inputset, None): sizes_for(t.inputset, config) for t in pending if t.value}
    needed.update({(t.inputset, _gradient_of(t.inputset)): sizes_for(t.inputset, config) for t in pending if t.grad})
    missing = {k: sizes for k, sizes in needed.items() if not cache.has(k[0], sizes, k[1])}
    report.reference_sets, report.reference_cached = len(needed), len(needed) - len(missing)
    chunks = [c for (s, gradient), sizes in missing.items() for c in chunk_tasks(s, sizes, gradient)]
    remaining = Counter((c.inputset, c.gradient) for c in chunks)
    results: dict[RefKey, list[Any]] = {k: [] for k in missing}
    failed: dict[RefKey, str] = {}
    bar = progress(total=len(chunks), desc="reference", unit="chunk") if progress else None
    for chunk, outcome in pool.run(settle_chunk, chunks, lambda c: REFERENCE_CHUNK_LIMIT):
        k = (chunk.inputset, chunk.gradient)
        if isinstance(outcome, Failure):
            what = "reference gradient" if chunk.gradient else "reference"
            failed[k] = f"{what} failed ({outcome.kind}): {outcome.message}"
        else:
            results[k].append(outcome)
        remaining[k] -= 1
        if remaining[k] == 0 and k not in failed:
            _save_reference(cache, k, missing[k], results.pop(k))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return failed


def _save_reference(cache: ReferenceCache, key: RefKey, sizes: list[int],
                    chunks: list[ChunkResult] | list[GradientChunk]) -> None:
    inputset, gradient = key
    if gradient is None:
        cache.save(inputset, assemble(inputset, sizes, chunks))  # type: ignore[arg-type]
    else:
        cache.save_gradient(inputset, gradient, assemble_gradient(sizes, inputset, chunks))  # type: ignore[arg-type]


def _with_bandwidth(pending: list[CellTask], pool: WorkerPool, store: Store, report: SweepReport,
                    progress: Callable[..., Any] | None) -> list[CellTask]:
    """Measure and store the bandwidth of every framework and device to be timed;
    the timed tasks, given their device's limit."""
    targets = sorted({(t.framework, t.device) for t in pending if t.time})
    bar = progress(total=len(targets), desc="bandwidth", unit="framework") if progress else None
    results: list[bandwidth.StreamResult] = []
    for _, outcome in pool.run(measure_bandwidth, targets, lambda t: REFERENCE_CHUNK_LIMIT):
        if not isinstance(outcome, Failure):  # a framework that cannot stream leaves the limit to the others
            results.extend(outcome)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    store.add_bandwidth(report.run_id, results)
    for device in {t.device for t in pending if t.time}:
        limit = bandwidth.limit(results, device)
        if limit is not None:
            report.bandwidth_limits[device] = limit
    return [dataclasses.replace(t, bandwidth_limit=report.bandwidth_limits.get(t.device)) if t.time else t
            for t in pending]


def _cells(pending: list[CellTask], failed_refs: dict[RefKey, str], pool: WorkerPool, store: Store,
           report: SweepReport, progress: Callable[..., Any] | None) -> None:
    runnable, unrunnable = [], []
    for t in pending:
        value_failed = failed_refs.get((t.inputset, None)) if t.value else None
        gradient_failed = failed_refs.get((t.inputset, _gradient_of(t.inputset))) if t.grad else None
        if value_failed:
            unrunnable.append(CellOutcome.failed(t, "error", value_failed))
            continue
        if gradient_failed:  # the values can still be measured
            report.gradients += store.add_gradients(report.run_id, [GradientRow(t.key(), "error",
                                                                                error=gradient_failed)])
            t = dataclasses.replace(t, grad=False)
        runnable.append(t)
    _store(store, report, unrunnable, None)
    bar = progress(total=len(runnable), desc="cells", unit="cell") if progress else None
    batch: list[CellOutcome] = []
    last_commit = time.monotonic()
    for task, outcome in pool.run(run_cell, runnable, lambda t: t.timeout + HARD_LIMIT_GRACE):
        if isinstance(outcome, Failure):
            outcome = CellOutcome.failed(task, outcome.kind, outcome.message)
        batch.append(outcome)
        if len(batch) >= 64 or time.monotonic() - last_commit > 1.0:
            _store(store, report, batch, bar)
            batch, last_commit = [], time.monotonic()
    _store(store, report, batch, bar)
    if bar:
        bar.close()


def _store(store: Store, report: SweepReport, outcomes: list[CellOutcome], bar: Any) -> None:
    if not outcomes:
        return
    rows = [o.value for o in outcomes if o.value]
    report.stored += store.add_cells(report.run_id, rows)
    report.gradients += store.add_gradients(report.run_id, [o.gradient for o in outcomes if o.gradient])
    for row in rows:
        report.statuses[row.status] = report.statuses.get(row.status, 0) + 1
        report.timed += row.forward_seconds is not None
    if bar:
        bar.update(len(outcomes))


def default_config(quick: bool = True) -> dict[str, Any]:
    return {
        "losses": tuple(registry.names()), "frameworks": tuple(adapters.FRAMEWORKS), "impls": None,
        "dtypes": DTYPES, "devices": ("cpu",), "regimes": None,
        "sizes": QUICK_SIZES if quick else FULL_SIZES, "widths": QUICK_WIDTHS if quick else FULL_WIDTHS,
    }
