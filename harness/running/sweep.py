"""Sweeps, the parent side: plan once, then schedule and store.

The parent finds out what the store and the reference cache already hold, plans
every cell's task once (what is missing of it: value, gradient, timing),
computes the missing references, measures the bandwidth when something is to be
timed, then hands each task to a worker (harness.running.cell) and stores what
comes back. Frameworks run only in worker processes (spawned, so TensorFlow and
torch never share a forked state). Only what the framework did is a cell's
result: a cell that raises becomes an error row, one that overruns the per-cell
limit a timeout row, one whose worker crashes on its own (SIGSEGV, SIGABRT, an
exit) a crashed row; the sweep goes on. A cell lost to lossbench (its reference
failed, the harness raised) or to a signal from outside (kill -9, the OOM
killer) is not stored: the next run measures it, and a cell whose worker an
outside signal has killed on two runs is stored crashed, naming the signal.
Rows are committed as they arrive, and cells already stored are skipped, so a
killed sweep rerun with the same configuration completes without losing or
duplicating anything; ``retry_failed`` measures stored failures again.

With ``grad``, every cell (of ``grad_regimes``, default all) also measures the
gradient of its default-reduction loss with respect to input; with ``time``,
cells of the timed regimes are also timed (harness.measure.timing), one cell at
a time in a single worker holding every core, after the untimed cells have run
on every worker. An untimed cell already stored is measured again and completed
with its timing. Workers keep to cells of one framework, loss and dtype while
there are any, so what a process compiled for one cell serves the next; on this
machine they share a folder of compiled kernels (COMPILE_CACHE_ENV), which the
sweep removes when it ends.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import adapters
from harness.measure import bandwidth, regimes
from harness.measure.environment import Environment, FrameworkInfo, describe_frameworks
from harness.measure.quantity import LossGradient, LossValue, Quantity, gradient_of
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import InputSet, chunk_tasks, settle_chunk
from harness.model import registry
from harness.model.spec import DTYPES
from harness.running.cell import (
    DEFAULT_CELL_TIMEOUT, CellJob, CellOutcome, CellTask, measure_bandwidth, run_cell,
)
from harness.running import cluster
from harness.running.workers import Failure, WorkerPool, sharing_compiled
from reference.arith import DEFAULT_ENGINE
from harness.store import Store, StoredKeys

QUICK_SIZES = (10, 100, 1_000, 10_000, 100_000)
FULL_SIZES = (*QUICK_SIZES, 1_000_000, 10_000_000)
QUICK_WIDTHS = (regimes.DEFAULT_WIDTH,)
FULL_WIDTHS = (regimes.DEFAULT_WIDTH, 1000)
# Speed hardly depends on values, except where subnormals slow a CPU down; time
# the typical inputs unless asked for more.
DEFAULT_TIMED_REGIMES = ("typical",)
# Grace beyond the in-worker limit before a stuck worker (inside C code) is killed,
# generous because a fresh worker first imports its framework.
HARD_LIMIT_GRACE = 120.0
# A reference chunk (CHUNK items) takes seconds; one taking an hour is stuck.
REFERENCE_CHUNK_LIMIT = 3600.0
# Signals a process raises on itself when its own code fails: the framework crashed.
OWN_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL})
# A cell whose worker an outside signal killed on this many runs is stored crashed.
LOST_LIMIT = 2


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
    timed_sizes: tuple[int, ...] | None = None  # None: every size swept
    grad: bool = False
    grad_regimes: tuple[str, ...] | None = None  # None: every regime the sweep runs
    reference_engine: str = DEFAULT_ENGINE
    retry_failed: bool = False  # measure stored error, timeout and crashed cells (and gradients) again
    modes: tuple[str, ...] | None = None  # None: each framework's default mode (eager where it has one)
    scheduler: str | None = None  # a Dask scheduler's address, or "local" (harness.running.cluster); None: this machine
    # The largest size whose references are settled (None: every size). A larger
    # cell is measured on its first items, against that size's reference (its
    # items_measured says how many; its reduction and gradient have no reference):
    # a device run carries small references to time large sizes.
    reference_size: int | None = None
    # False: use the reference cache as it is; a cell whose reference is not there is
    # lost to lossbench, not stored (a device run without python-flint says which).
    compute_references: bool = True

    @property
    def value(self) -> LossValue:
        """The value reference the cells of this sweep read."""
        return LossValue(self.reference_engine)

    def gradient(self, loss: str) -> LossGradient:
        return gradient_of(loss, self.reference_engine)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


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
    # Cells not stored, by reason: lost to lossbench itself, or to a signal from outside.
    lost_to_harness: Counter[str] = field(default_factory=Counter)
    lost_to_signal: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Plan:
    """Every cell of the grid counted, and the tasks of those with something missing."""

    cells: int
    tasks: tuple[CellTask, ...]


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


def referenced(size: int, config: SweepConfig) -> bool:
    """Whether cells of this size have a reference of their own (see reference_size)."""
    return config.reference_size is None or size <= config.reference_size


def reference_sizes(inputset: InputSet, config: SweepConfig) -> list[int]:
    """The sizes a set's references cover: its referenced sizes, else its smallest."""
    sizes = sizes_for(inputset, config)
    return [n for n in sizes if referenced(n, config)] or sizes[:1]


def plan(config: SweepConfig, info: dict[str, FrameworkInfo], stored: StoredKeys) -> Plan:
    """Each cell asked only for what is missing: a stored cell is neither measured
    nor timed again, a stored gradient not measured again, and a stored untimed
    cell to be timed is measured whole (its timed row replaces the untimed one).
    With retry_failed, failed cells and gradients count as missing."""
    if config.retry_failed:
        stored = StoredKeys({k: v for k, v in stored.cells.items() if k not in stored.failed_cells},
                            stored.gradients - stored.failed_gradients)
    cells, tasks = 0, []
    for inputset in input_sets(config):
        for size in sizes_for(inputset, config):
            for framework in config.frameworks:
                fw = info[framework]
                if not fw.available:
                    continue
                modes = [m for m in config.modes or fw.modes[:1] if m in fw.modes]
                for impl, mode in itertools.product(fw.impls.get(inputset.loss, ()), modes):
                    if config.impls is not None and impl not in config.impls:
                        continue
                    for device in config.devices:
                        if device not in fw.devices:
                            continue
                        cells += 1
                        cell = CellTask(inputset, size, framework, fw.version or "", impl, device, mode=mode)
                        key = cell.key()
                        time_it = (config.time and inputset.regime in config.timed_regimes
                                   and (config.timed_sizes is None or size in config.timed_sizes)
                                   and not stored.cells.get(key, False))
                        grad = (config.grad and (config.grad_regimes is None or inputset.regime in config.grad_regimes)
                                and referenced(size, config) and key not in stored.gradients)
                        value = key not in stored.cells or time_it
                        if value or grad:
                            tasks.append(dataclasses.replace(cell, value=value, grad=grad, time=time_it))
    return Plan(cells, tuple(tasks))


class DeviceUnavailable(ValueError):
    """A device asked for that no chosen framework offers on this machine."""


def check_devices(config: SweepConfig, info: dict[str, FrameworkInfo] | None = None) -> None:
    """Refuse, before any store or run is made, a device no chosen framework has
    here (--device cuda without CUDA). Frameworks are asked in a worker, as the
    sweep asks them, so this process imports none (``info``: already asked)."""
    if set(config.devices) <= {"cpu"}:
        return
    info = info or framework_info(config.frameworks)
    for device in config.devices:
        if not any(device in fw.devices for fw in info.values() if fw.available):
            raise DeviceUnavailable(f"no chosen framework offers device {device} on this machine "
                                    f"({', '.join(config.frameworks)} checked)")


def run_sweep(config: SweepConfig, store: Store, cache: ReferenceCache,
              progress: Callable[..., Any] | None = None, announce: Callable[[str], Any] = lambda line: None,
              info: dict[str, FrameworkInfo] | None = None,
              bandwidth_limits: dict[str, float] | None = None) -> SweepReport:
    """Run (or resume) a sweep. ``progress(total=, desc=, unit=)`` returns an object
    with update(n) and close(), like tqdm; ``announce`` takes lines worth saying
    before the work starts (a cluster's dashboard, refused workers); ``info``, what
    the frameworks offer where the caller has asked them already (else a worker
    asks); ``bandwidth_limits``, each device's limit as an earlier sweep of the same
    job measured it: a device found there is not measured again (this run stores no
    STREAM results for it), and the limits this sweep measures are added to it."""
    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    cache.remove_stale()
    # This machine's workers (the timing worker too) share a folder of compiled kernels.
    with sharing_compiled() as environment:
        if config.scheduler is None:
            with WorkerPool(config.jobs, threads, environment) as pool:
                return _run(config, store, cache, progress, pool, info, bandwidth_limits, environment)
        client, local = cluster.connect(config.scheduler, config.jobs)
        try:
            workers, refused = cluster.checked_workers(client)
            for line in refused:
                announce(f"lossbench: warning: {line}")
            announce(f"Dask: {len(workers)} workers at {client.scheduler.address}; "
                     f"dashboard {client.dashboard_link}")
            with cluster.DaskPool(client, workers, threads) as pool:
                return _run(config, store, cache, progress, pool, info, bandwidth_limits, environment)
        finally:
            client.close()
            if local is not None:
                local.close()


def _run(config: SweepConfig, store: Store, cache: ReferenceCache, progress: Callable[..., Any] | None,
         pool: WorkerPool | cluster.DaskPool, info: dict[str, FrameworkInfo] | None,
         bandwidth_limits: dict[str, float] | None, environment: dict[str, str]) -> SweepReport:
    """The sweep on ``pool``; timed cells on this machine alone, one at a time, in a
    worker with ``environment``."""
    run_id = None
    try:
        if info is None:
            ((_, info),) = list(pool.run(describe_frameworks, [config.frameworks]))
            if isinstance(info, Failure):
                raise RuntimeError(f"could not start a worker: {info.message}")
        timing_threads = (os.cpu_count() or 1) if config.time else None
        run_id = store.start_run(config.describe(), Environment.collect(info, config.jobs, pool.threads,
                                                                        timing_threads))
        planned = plan(config, info, store.stored_keys())
        report = SweepReport(run_id, planned.cells, planned.cells - len(planned.tasks), 0,
                             unavailable={n: d.reason or "" for n, d in info.items() if not d.available})
        started = time.perf_counter()
        failed_refs = _references(planned.tasks, config, cache, pool, report, progress)
        report.reference_seconds = time.perf_counter() - started
        started = time.perf_counter()
        if any(t.time for t in planned.tasks):
            # What is not timed first, on every worker; then the timed cells get the
            # machine to themselves: one worker, every core.
            _cells([t for t in planned.tasks if not t.time], failed_refs, config, cache, pool, store,
                   report, progress, pool.threads)
            timed = [t for t in planned.tasks if t.time]
            pool.close()
            with WorkerPool(1, os.cpu_count() or 1, environment) as timing_pool:
                known = bandwidth_limits if bandwidth_limits is not None else {}
                report.bandwidth_limits.update({d: known[d] for d in {t.device for t in timed} if d in known})
                unknown = [t for t in timed if t.device not in known]
                if unknown:
                    _measure_bandwidth(unknown, timing_pool, store, report, progress)
                known.update(report.bandwidth_limits)
                # Values with the other workers' threads (torch reduces by thread), timing with all.
                _cells(timed, failed_refs, config, cache, timing_pool, store, report, progress, pool.threads)
        else:
            _cells(planned.tasks, failed_refs, config, cache, pool, store, report, progress, pool.threads)
        report.cell_seconds = time.perf_counter() - started
        store.end_run(run_id, "incomplete" if report.lost_to_harness or report.lost_to_signal else "complete")
        return report
    except BaseException:
        if run_id is not None:
            try:
                store.end_run(run_id, "interrupted")
            except OSError:  # the machine fault that stopped the sweep stops this too: the next
                pass  # writing command marks the run interrupted (its process is gone by then)
        raise


# A set's reference of one measured quantity.
RefKey = tuple[InputSet, Quantity]


def _needed(task: CellTask, config: SweepConfig) -> list[RefKey]:
    s = task.inputset
    return ([(s, config.value)] if task.value else []) + ([(s, config.gradient(s.loss))] if task.grad else [])


def needed_references(tasks: Sequence[CellTask], config: SweepConfig) -> dict[RefKey, list[int]]:
    """Every set reference the tasks read, with the sizes it must cover."""
    return {k: reference_sizes(k[0], config) for t in tasks for k in _needed(t, config)}


def framework_info(frameworks: Sequence[str]) -> dict[str, FrameworkInfo]:
    """What each framework offers here, asked in a worker (this process imports none)."""
    with WorkerPool(1) as pool:
        ((_, info),) = list(pool.run(describe_frameworks, [tuple(frameworks)]))
    if isinstance(info, Failure):
        raise RuntimeError(f"could not start a worker: {info.message}")
    return info


def _references(tasks: Sequence[CellTask], config: SweepConfig, cache: ReferenceCache, pool: WorkerPool,
                report: SweepReport, progress: Callable[..., Any] | None) -> dict[RefKey, str]:
    """Compute every missing set reference (values and gradients), chunks of all
    sets in parallel; returns those that failed, with why."""
    needed = needed_references(tasks, config)
    missing = {k: sizes for k, sizes in needed.items() if not cache.has(k[0], sizes, k[1])}
    report.reference_sets, report.reference_cached = len(needed), len(needed) - len(missing)
    if not config.compute_references:
        return {k: f"{k[1].label} not in the reference cache {cache.directory}" for k in missing}
    chunks = [c for (s, quantity), sizes in missing.items() for c in chunk_tasks(s, sizes, quantity)]
    remaining = Counter((c.inputset, c.quantity) for c in chunks)
    results: dict[RefKey, list[Any]] = {k: [] for k in missing}
    failed: dict[RefKey, str] = {}
    bar = progress(total=len(chunks), desc="reference", unit="chunk") if progress else None
    for chunk, outcome in pool.run(settle_chunk, chunks, lambda c: REFERENCE_CHUNK_LIMIT):
        k = (chunk.inputset, chunk.quantity)
        if isinstance(outcome, Failure):
            failed[k] = f"{chunk.quantity.label} failed ({outcome.kind}): {outcome.message}"
        else:
            results[k].append(outcome)
        remaining[k] -= 1
        if remaining[k] == 0 and k not in failed:
            cache.save(k[0], k[1], k[1].assemble(k[0], missing[k], results.pop(k)))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return failed


def prepare_references(config: SweepConfig, cache: ReferenceCache,
                       progress: Callable[..., Any] | None = None) -> tuple[SweepReport, dict[RefKey, str]]:
    """Every reference a sweep of ``config`` reads from an empty store, computed into
    ``cache`` without measuring a cell: for a machine that cannot compute them (a
    device run) or to time the reference alone. Returns the report and those that failed."""
    planned = plan(config, framework_info(config.frameworks), StoredKeys({}, set()))
    report = SweepReport(0, planned.cells, 0, 0)
    started = time.perf_counter()
    with WorkerPool(config.jobs, max(1, (os.cpu_count() or 1) // config.jobs)) as pool:
        failed = _references(planned.tasks, config, cache, pool, report, progress)
    report.reference_seconds = time.perf_counter() - started
    return report, failed


def _measure_bandwidth(tasks: Sequence[CellTask], pool: WorkerPool, store: Store, report: SweepReport,
                       progress: Callable[..., Any] | None) -> None:
    """Measure and store the bandwidth of every framework and device to be timed;
    each device's limit goes into the report."""
    targets = sorted({(t.framework, t.device) for t in tasks if t.time})
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
    for device in {t.device for t in tasks if t.time}:
        limit = bandwidth.limit(results, device)
        if limit is not None:
            report.bandwidth_limits[device] = limit


def _cells(tasks: Sequence[CellTask], failed_refs: dict[RefKey, str], config: SweepConfig, cache: ReferenceCache,
           pool: WorkerPool, store: Store, report: SweepReport, progress: Callable[..., Any] | None,
           threads: int) -> None:
    """Measure every task whose references exist, its value and gradient with
    ``threads`` threads; a task whose reference failed is lost to lossbench (its
    gradient alone, where the value can be measured)."""
    jobs = []
    for t in tasks:
        value_failed = failed_refs.get((t.inputset, config.value)) if t.value else None
        gradient_failed = failed_refs.get((t.inputset, config.gradient(t.inputset.loss))) if t.grad else None
        if value_failed or gradient_failed:
            report.lost_to_harness[f"reference: {value_failed or gradient_failed}"] += 1
        if value_failed or (gradient_failed and not t.value):
            continue
        if gradient_failed:
            t = dataclasses.replace(t, grad=False)
        jobs.append(CellJob.of(t, cache, config.cell_timeout, report.bandwidth_limits.get(t.device), config.value,
                               config.gradient(t.inputset.loss), threads))
    bar = progress(total=len(jobs), desc="cells", unit="cell") if progress else None
    batch: list[CellOutcome] = []
    last_commit = time.monotonic()
    for job, outcome in pool.run(run_cell, jobs, lambda j: j.timeout + HARD_LIMIT_GRACE, _same_process):
        if isinstance(outcome, Failure):
            outcome = _failed(job.task, outcome, store, report)
        if outcome is not None:
            batch.append(outcome)
        elif bar:
            bar.update(1)
        if len(batch) >= 64 or time.monotonic() - last_commit > 1.0:
            _store(store, report, batch, bar)
            batch, last_commit = [], time.monotonic()
    _store(store, report, batch, bar)
    if bar:
        bar.close()


def _same_process(job: CellJob) -> tuple[str, ...]:
    """Cells best run in one process, one after another: what the framework compiled
    (JAX's kernels of each shape, a compiled loss) and the inputs made serve the next."""
    t = job.task
    return t.framework, t.mode, t.device, t.inputset.loss, t.inputset.dtype


def _failed(task: CellTask, failure: Failure, store: Store, report: SweepReport) -> CellOutcome | None:
    """What a task that produced no result stores: the framework's own failure
    (hung past the hard limit, crashed with a fault signal or an exit) is the
    cell's result; a task lost to lossbench (it raised outside the framework) or
    to an outside signal stores nothing, and the next run measures it, unless an
    outside signal has now killed its worker on LOST_LIMIT runs."""
    if failure.kind == "error":
        report.lost_to_harness[failure.message] += 1
        return None
    if failure.kind == "crashed" and failure.signal is not None and failure.signal not in OWN_SIGNALS:
        times = store.count_lost(report.run_id, task.key(), failure.message)
        if times < LOST_LIMIT:
            report.lost_to_signal[failure.message] += 1
            return None
        return CellOutcome.failed(task, "crashed", f"{failure.message} (on {times} runs)")
    return CellOutcome.failed(task, failure.kind, failure.message)


def _store(store: Store, report: SweepReport, outcomes: list[CellOutcome], bar: Any) -> None:
    if not outcomes:
        return
    rows = store.add(report.run_id, [o.value for o in outcomes if o.value])
    report.stored += len(rows)
    report.gradients += len(store.add(report.run_id, [o.gradient for o in outcomes if o.gradient]))
    for row in rows:  # only what this sweep stored: another one may have stored a cell first
        report.statuses[row.status] = report.statuses.get(row.status, 0) + 1
        report.timed += row.forward_seconds is not None
    if bar:
        bar.update(len([o for o in outcomes if o.value or o.gradient]))


def default_config(quick: bool = True) -> dict[str, Any]:
    return {
        "losses": tuple(registry.names()), "frameworks": tuple(adapters.FRAMEWORKS), "impls": None,
        "dtypes": DTYPES, "devices": ("cpu",), "regimes": None,
        "sizes": QUICK_SIZES if quick else FULL_SIZES, "widths": QUICK_WIDTHS if quick else FULL_WIDTHS,
    }
