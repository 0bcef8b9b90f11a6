"""A benchmark case made ready to time, or measured for accuracy as a sweep cell
(the asv and pytest-benchmark suites in bench/ call these)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness import adapters
from harness.adapters.base import Prepared
from harness.measure.quantity import VALUE
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import InputSet
from harness.model import registry
from harness.running.benchgrid import DEVICE, REFCACHE_ENV, SEED, SIZES, TRACK_MAX_SIZE, BenchCase
from harness.running.cell import DEFAULT_CELL_TIMEOUT, CellJob, CellTask, run_cell
from harness.store import CellRow


def _adapter(case: BenchCase) -> adapters.Adapter:
    try:
        adapter = adapters.load(case.framework)
    except adapters.FrameworkUnavailable as exc:
        raise NotImplementedError(str(exc)) from None
    if case.impl_name not in adapter.impl_names(case.loss):
        raise NotImplementedError(f"{case.framework} has no {case.impl_name} {case.loss}")
    failure = adapter.known_failure(case.loss, case.impl_name, case.dtype, DEVICE)
    if failure:
        raise NotImplementedError(failure)
    return adapter


def inputset(case: BenchCase) -> InputSet:
    return InputSet.with_defaults(case.loss, case.dtype, "typical", SEED)


def arrays(case: BenchCase) -> dict[str, np.ndarray]:
    return inputset(case).inputs(case.size)


def prepare(case: BenchCase, gradient: bool = False) -> Prepared:
    """The case's loss call (default reduction) or its gradient, ready to time;
    NotImplementedError where the case cannot run here."""
    adapter = _adapter(case)
    spec = registry.get(case.loss)
    if gradient and adapter.gradient(spec, case.impl_name) is None:
        raise NotImplementedError(f"{case.impl} has no gradient for {case.loss}")
    return adapter.prepare(spec, case.impl_name, arrays(case), case.dtype, DEVICE, spec.default_reduction,
                           spec.resolve_params({}), gradient=gradient, mode=case.mode)


def refcache() -> ReferenceCache:
    return ReferenceCache(Path(os.environ.get(REFCACHE_ENV, Path.home() / ".cache" / "lossbench" / "refcache")))


def accuracy_task(case: BenchCase) -> CellJob:
    """The case as a sweep cell, its reference computed once per machine for the
    grid's sizes and then read from the reference cache; NotImplementedError where
    the case cannot run here or is too large to track."""
    if case.size > TRACK_MAX_SIZE:
        raise NotImplementedError(f"accuracy is tracked up to {TRACK_MAX_SIZE} elements")
    adapter = _adapter(case)
    inputs = inputset(case)
    cache = refcache()
    sizes = [n for n in SIZES if inputs.width <= n <= TRACK_MAX_SIZE]
    if not cache.has(inputs, sizes, VALUE):
        cache.save(inputs, VALUE, VALUE.compute(inputs, sizes))
    task = CellTask(inputs, case.size, case.framework, adapter.version(), case.impl_name, DEVICE, mode=case.mode)
    return CellJob.of(task, cache, DEFAULT_CELL_TIMEOUT)


def accuracy(job: CellJob) -> CellRow:
    """The cell measured against the reference; raises if the framework failed."""
    row = run_cell(job).value
    if row is None or row.status != "ok":
        task = job.task
        raise RuntimeError(f"{task.inputset.loss} {task.framework} {task.impl}: {row and row.status}: "
                           f"{row and row.error}")
    return row
