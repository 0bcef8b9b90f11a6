"""Measuring into the store: lossbench sweep, and run (the main job)."""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

from tqdm import tqdm

from harness import adapters
from harness.adapters import FRAMEWORKS
from harness.measure.environment import FrameworkInfo
from harness.measure.refcache import ReferenceCache
from harness.model import registry
from harness.model.spec import ALL_REGIMES, DEVICES, DTYPES, MODES
from harness.present import report
from harness.present.commands.catalog import build_atlas, store_atlas
from harness.present.commands.stored import write_report
from harness.present.options import (
    Command, UsageError, bounded, loss_spec, memory, opened, positive_int,
    reference_engine_argument,
)
from harness.running.cell import DEFAULT_CELL_TIMEOUT
from harness.running import costs
from harness.running.cluster import ClusterRefused
from harness.running.sweep import (
    DEFAULT_TIMED_REGIMES, DeviceUnavailable, SweepConfig, check_devices, default_config, framework_info,
    needed_references, plan, run_sweep,
)
from harness.store import DEFAULT_DB, StoredKeys


# A cell holds its input, its reference (hi, lo, rounded, settled, precision) and its
# metrics per element: 200 bytes per element is a generous bound.
BYTES_PER_ELEMENT = 200
MAX_SEEDS = 10_000  # a quick sweep's plan then holds over 100 million cells
MAX_CELL_TIMEOUT = 1e6  # seconds (11.6 days): beyond, the interval timer cannot be set


def max_size() -> int:
    """The largest input size this machine's memory holds, by BYTES_PER_ELEMENT."""
    return memory(available=False) // BYTES_PER_ELEMENT


def sweep_config(args: argparse.Namespace) -> SweepConfig:
    defaults = default_config(quick=not args.full)
    for loss in args.loss or ():
        loss_spec(loss)
    frameworks = tuple(dict.fromkeys(args.framework or defaults["frameworks"]))
    chosen = [FRAMEWORKS[name] for name in frameworks]
    if args.impl and all(fw.impls is not None for fw in chosen):
        impls = {impl for fw in chosen for impl in fw.impls or ()}
        for impl in args.impl:
            if impl not in impls:
                raise UsageError(f"unknown impl {impl!r}; expected one of {', '.join(sorted(impls))}")
    if not 0 < args.cell_timeout <= MAX_CELL_TIMEOUT:
        raise UsageError(f"--cell-timeout must be a finite number of seconds in (0, {MAX_CELL_TIMEOUT:g}], "
                         f"got {args.cell_timeout!r}")
    if args.grad_regime and not args.grad:
        raise UsageError("--grad-regime needs --grad")
    if args.time_size and not args.time:
        raise UsageError("--time-size needs --time")
    sizes = tuple(sorted(set(args.sizes or defaults["sizes"])))
    for size in args.time_size or ():
        if size not in sizes:
            raise UsageError(f"--time-size {size} is not one of the swept sizes ({', '.join(map(str, sizes))})")
    for name in args.framework or ():
        if name in adapters.disabled():
            raise UsageError(f"framework {name} is disabled by LOSSBENCH_DISABLE")
    return SweepConfig(
        losses=tuple(dict.fromkeys(args.loss or defaults["losses"])),
        frameworks=frameworks,
        impls=tuple(dict.fromkeys(args.impl)) if args.impl else None,
        dtypes=tuple(dict.fromkeys(args.dtype or defaults["dtypes"])),
        devices=tuple(dict.fromkeys(args.device or defaults["devices"])),
        regimes=tuple(dict.fromkeys(args.regime)) if args.regime else None,
        sizes=sizes,
        widths=defaults["widths"],
        seeds=args.seeds, jobs=args.jobs, cell_timeout=args.cell_timeout,
        time=args.time, timed_regimes=tuple(dict.fromkeys(args.time_regime or DEFAULT_TIMED_REGIMES)),
        timed_sizes=tuple(sorted(set(args.time_size))) if args.time_size else None,
        grad=args.grad, grad_regimes=tuple(dict.fromkeys(args.grad_regime)) if args.grad_regime else None,
        reference_engine=args.reference_engine, retry_failed=args.retry_failed,
        modes=tuple(dict.fromkeys(args.mode)) if args.mode else None, scheduler=args.scheduler or None,
    )


def run_and_print(config: SweepConfig, db: Path, no_progress: bool, required: bool = True,
                  info: dict[str, FrameworkInfo] | None = None, bandwidth_limits: dict[str, float] | None = None) -> int:
    """Run the sweep into ``db`` and print what it did; returns the exit code
    (3 where cells were lost to a signal from outside, 70 to lossbench itself:
    either way not stored, and the next run measures them). A grid with no cell
    is a usage error if ``required``, else said and skipped. ``info`` and
    ``bandwidth_limits``: as run_sweep takes them."""
    progress = None if no_progress else functools.partial(tqdm, file=sys.stderr, mininterval=1.0)
    cache = ReferenceCache(db.parent / "refcache")
    try:
        check_devices(config)
    except DeviceUnavailable as exc:
        raise UsageError(str(exc)) from None
    with opened(db) as store:
        store.check()
        try:
            done = run_sweep(config, store, cache, progress, lambda line: print(line, flush=True), info,
                             bandwidth_limits)
        except ClusterRefused as exc:
            raise UsageError(str(exc)) from None
    for line in cache.discarded:
        print(f"lossbench: warning: {line}", file=sys.stderr)
    for name, reason in done.unavailable.items():
        print(f"skipped {name}: {reason}")
    if done.planned == 0:
        if not required:
            print(f"run {done.run_id}: no cell (no chosen framework runs {', '.join(config.modes or ('eager',))})")
            return 0
        raise UsageError("the filters select no cell (check --framework, --impl, --device, --mode and --regime)")
    statuses = ", ".join(f"{n} {k}" for k, n in sorted(done.statuses.items())) or "nothing new"
    print(f"run {done.run_id}: {done.planned} cells planned, {done.skipped} already stored, "
          f"{done.stored} stored now ({statuses})")
    print(f"reference: {done.reference_sets} input sets ({done.reference_cached} from cache) in "
          f"{done.reference_seconds:.1f} s; cells in {done.cell_seconds:.1f} s; store {db}")
    if config.time:
        limits = ", ".join(f"{device} {gbps:.1f} GB/s" for device, gbps in sorted(done.bandwidth_limits.items()))
        print(f"timed {done.timed} cells; bandwidth limit {limits or 'not measured (nothing new to time)'}")
    if config.grad:
        print(f"gradients: {done.gradients} stored now (lossbench results --grad lists them)")
    for lost, whose in ((done.lost_to_signal, "a signal from outside"), (done.lost_to_harness, "lossbench itself")):
        for reason, count in lost.most_common(5):
            print(f"lossbench: warning: {count} cells lost to {whose}, not stored: {reason}", file=sys.stderr)
    if done.lost_to_signal or done.lost_to_harness:
        print(f"lossbench: error: {sum(done.lost_to_signal.values()) + sum(done.lost_to_harness.values())} cells "
              "were not measured (run again to measure them)", file=sys.stderr)
    return 70 if done.lost_to_harness else 3 if done.lost_to_signal else 0


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--quick", dest="full", action="store_false", help="sizes 10..1e5, width 10 (default)")
    grid.add_argument("--full", dest="full", action="store_true", help="sizes 10..1e7, widths 10 and 1000")
    parser.add_argument("--loss", nargs="+", action="extend", metavar="L")
    parser.add_argument("--framework", nargs="+", action="extend", metavar="F", choices=list(FRAMEWORKS))
    parser.add_argument("--impl", nargs="+", action="extend", metavar="I")
    parser.add_argument("--dtype", nargs="+", action="extend", metavar="D", choices=DTYPES)
    parser.add_argument("--device", nargs="+", action="extend", metavar="D", choices=DEVICES)
    parser.add_argument("--mode", nargs="+", action="extend", metavar="M", choices=MODES,
                        help="eager and/or compiled (default: each framework's own, eager where it has one); "
                             "a framework runs the chosen modes it has")
    parser.add_argument("--regime", nargs="+", action="extend", metavar="R", choices=ALL_REGIMES)
    parser.add_argument("--sizes", nargs="+", action="extend", metavar="N",
                        type=bounded(max_size(), "the elements this machine's memory holds for one input"))
    parser.add_argument("--seeds", type=bounded(MAX_SEEDS, "seeds whose plan fits in memory"), default=1,
                        metavar="K", help="seeds 0..K-1 (default 1)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes (default: one per core)")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S",
                        help=f"per-cell time limit in seconds (default {DEFAULT_CELL_TIMEOUT:g})")
    parser.add_argument("--time", action="store_true",
                        help="also time forward and forward+backward, after measuring the memory bandwidth")
    parser.add_argument("--time-regime", nargs="+", action="extend", metavar="R", choices=ALL_REGIMES,
                        help=f"regimes to time (default {' '.join(DEFAULT_TIMED_REGIMES)})")
    parser.add_argument("--time-size", nargs="+", action="extend", metavar="N", type=positive_int,
                        help="sizes to time, among --sizes (default: every size)")
    parser.add_argument("--grad", action="store_true",
                        help="also measure each cell's gradient with respect to input against the reference derivative")
    parser.add_argument("--grad-regime", nargs="+", action="extend", metavar="R", choices=ALL_REGIMES,
                        help="regimes whose gradients to measure (default: every regime swept)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--retry-failed", action="store_true",
                        help="measure stored error, timeout and crashed cells (and gradients) again; "
                             "the new rows replace the old")
    reference_engine_argument(parser)
    scheduler_argument(parser)
    parser.add_argument("--plan", action="store_true",
                        help="print the cells, input sets, reference items and estimated CPU-hours; run nothing")
    parser.set_defaults(full=False)


def _run_sweep(args: argparse.Namespace) -> int:
    if args.plan:
        return print_plan(sweep_config(args), args.db)
    return run_and_print(sweep_config(args), args.db, args.no_progress)


def print_plan(config: SweepConfig, db: Path) -> int:
    """What the sweep would measure and what it would cost, running nothing."""
    info = framework_info(config.frameworks)
    if db.exists():
        with opened(db, "lossbench sweep") as store:
            stored, rows = store.stored_keys(), list(store.cells())
    else:
        stored, rows = StoredKeys({}, set()), []
    planned = plan(config, info, stored)
    cache = ReferenceCache(db.parent / "refcache")
    found = costs.estimate(planned.tasks, planned.cells, needed_references(planned.tasks, config), cache, rows)
    print(f"plan: {found.cells:,} cells, {found.tasks:,} to measure ({found.timed:,} timed), "
          f"{found.input_sets:,} input sets")
    print(f"reference: {found.value_sets:,} value references to compute ({found.value_items:,} items), "
          f"{found.gradient_sets:,} gradient references ({found.gradient_items:,} components)")
    cells = f"{found.cell_seconds / 3600:,.2f} CPU-hours" if found.cell_seconds is not None else "unknown"
    print(f"estimated: reference {found.reference_seconds / 3600:,.2f} CPU-hours (rates measured now on typical "
          f"inputs; other regimes cost more), cells {cells} ({found.cell_basis})")
    if found.cpu_hours is not None:
        print(f"total {found.cpu_hours:,.2f} CPU-hours; " + "; ".join(costs.hours_on(found)))
    return 0


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    parser.add_argument("--out", type=Path, default=report.DEFAULT_OUT, help=f"report folder (default {report.DEFAULT_OUT})")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes for the reference and accuracy cells (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    reference_engine_argument(parser)
    scheduler_argument(parser)


def scheduler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get(SCHEDULER_ENV),
                        help="run the reference and the untimed cells on the Dask cluster at ADDRESS "
                             "(tcp://host:8786), or on a LocalCluster of --jobs worker processes with 'local'; "
                             f"timed cells stay on this machine (default: ${SCHEDULER_ENV}, else this machine)")


SCHEDULER_ENV = "LOSSBENCH_SCHEDULER"


# The main job's compiled cells: compiling costs seconds per graph, so one dtype and
# one size (sweep --mode compiled runs the whole grid).
COMPILED_DTYPES = ("float32",)
COMPILED_SIZE = 1_000


def _run_run(args: argparse.Namespace) -> int:
    """The main job: what `make run` does."""
    # Accuracy on every regime and size; gradients on typical inputs (every regime's
    # gradient reference would double the cold run: sweep --grad does it); timing on
    # typical inputs of the smallest and the largest size (sweep --time times every size).
    # Then compiled execution, where a framework has it, on every regime at one size.
    defaults = default_config(quick=True)
    timed = (min(defaults["sizes"]), max(defaults["sizes"]))
    config = SweepConfig(**defaults, jobs=args.jobs, time=True, timed_sizes=timed, grad=True,
                         grad_regimes=DEFAULT_TIMED_REGIMES, reference_engine=args.reference_engine,
                         scheduler=args.scheduler or None)
    compiled = SweepConfig(**{**defaults, "dtypes": COMPILED_DTYPES, "sizes": (COMPILED_SIZE,)}, jobs=args.jobs,
                           time=True, grad=True, grad_regimes=DEFAULT_TIMED_REGIMES,
                           reference_engine=args.reference_engine, modes=("compiled",),
                           scheduler=args.scheduler or None)
    print(f"lossbench run: quick sweep of {len(config.losses)} losses into {args.db}; gradients on "
          f"{', '.join(DEFAULT_TIMED_REGIMES)} inputs, timing on them at sizes {timed[0]} and {timed[1]}; then "
          f"compiled execution in {', '.join(COMPILED_DTYPES)} at size {COMPILED_SIZE}", flush=True)
    # Asked once for both sweeps (a worker imports every framework); a cluster's workers answer for themselves.
    # The memory bandwidth too: the compiled sweep, minutes later, takes the limit the first one measured.
    info = framework_info(config.frameworks) if config.scheduler is None else None
    limits: dict[str, float] = {}
    code = max(run_and_print(config, args.db, args.no_progress, info=info, bandwidth_limits=limits),
               run_and_print(compiled, args.db, args.no_progress, required=False, info=info, bandwidth_limits=limits))
    with opened(args.db) as store:
        stored = store.atlas()
    entries = build_atlas(list(registry.names()), info or framework_info(config.frameworks), ["float32"],
                          args.no_progress, stored, jobs=args.jobs)
    store_atlas(args.db, entries)
    print(f"atlas: {len(entries)} entries stored" + (" (the others are current)" if stored else ""))
    print(write_report(args.db, args.out, jobs=args.jobs))
    return code


COMMANDS = (
    Command("sweep", "measure many cells into the results store (resumable)",
            _sweep_arguments, _run_sweep),
    Command("run", "the main job: quick CPU sweep (timing and gradients on typical inputs), "
              "the atlas, then the report", _run_arguments, _run_run),
)
