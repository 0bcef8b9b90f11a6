"""CUDA measured for real in one short command: a fixed subset of the grid, run
on a GPU machine with nothing installed but its own packages, into a store that
`lossbench merge` brings home.

The subset: every loss in torch and JAX (each impl, eager), the four dtypes,
the typical and saturated regimes, sizes 1e3, 1e5 and 1e7, with gradients, and
the largest size timed (synchronised) against the device's own STREAM limit.
References are the expensive part and the device machine has no python-flint,
so they are computed here first and carried: value and gradient references of
the smallest size (``--reference-size``) only, to stay small. A larger cell is
measured on its first items against them (the inputs of every size are prefixes
of one stream; its ``items_measured`` says how many); its mean has no
reference. A set whose reference was not carried is named, and its cells are
not measured, unless ``--compute-missing`` computes it there with the engine the
machine has (mpmath alone without python-flint: slow), and says so.

    # here, on the CPU machine: the references (printed: their size, under 64 MiB)
    .venv/bin/python bench/device_run.py --prepare
    # on the device machine, carrying reports/device-references:
    PYTHONPATH=. python3 bench/device_run.py --out $OUT
    # here again: the rows into the local store, beside the CPU's
    .venv/bin/lossbench merge DIR/device.sqlite

``--device cpu`` runs the same script on this machine (the test suite does, on
a tiny subset), so it cannot rot.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before any framework is imported, in this process and the workers it spawns:
# TensorFlow is not on the device machine, and JAX must share the GPU with torch.
os.environ.setdefault("LOSSBENCH_DISABLE", "tensorflow")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from harness.measure import regimes  # noqa: E402
from harness.measure.refcache import ReferenceCache  # noqa: E402
from harness.model import registry  # noqa: E402
from harness.model.spec import DTYPES  # noqa: E402
from harness.running.sweep import (  # noqa: E402
    DeviceUnavailable, SweepConfig, check_devices, framework_info, prepare_references, run_sweep,
)
from harness.store import open_store  # noqa: E402
from reference.arith import DEFAULT_ENGINE, flint  # noqa: E402

FRAMEWORKS = ("torch", "jax")
REGIMES = ("typical", "saturated")
SIZES = (1_000, 100_000, 10_000_000)
REFERENCES = ROOT / "reports" / "device-references"
STORE = "device.sqlite"


def config(args: argparse.Namespace, device: str, engine: str = DEFAULT_ENGINE, compute: bool = False) -> SweepConfig:
    return SweepConfig(
        losses=tuple(args.loss), frameworks=FRAMEWORKS, impls=None, dtypes=tuple(args.dtype), devices=(device,),
        regimes=REGIMES, sizes=tuple(args.sizes), widths=(regimes.DEFAULT_WIDTH,), jobs=args.jobs,
        cell_timeout=args.cell_timeout, time=True, timed_regimes=("typical",), timed_sizes=(max(args.sizes),),
        grad=True, reference_engine=engine, reference_size=args.reference_size, compute_references=compute,
    )


def _say(line: str) -> None:
    print(line, flush=True)


class Lines:
    """A progress display of plain lines (a device run's output is read from a log)."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit, self.done, self.shown = total, desc, unit, 0, time.monotonic()
        _say(f"{desc}: {total} {unit}s")

    def update(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self.shown > 10:
            self.shown = time.monotonic()
            _say(f"{self.desc}: {self.done}/{self.total}")

    def close(self) -> None:
        _say(f"{self.desc}: {self.done}/{self.total} done")


def prepare(args: argparse.Namespace) -> int:
    """Compute the subset's references into ``--references`` (on the CPU machine)."""
    report, failed = prepare_references(config(args, "cpu", compute=True), ReferenceCache(args.references), Lines)
    size = sum(p.stat().st_size for p in args.references.glob("*.npz"))
    _say(f"references: {report.reference_sets} input sets ({report.reference_cached} already there) in "
         f"{report.reference_seconds:.1f} s; {size / 2**20:.1f} MiB in {args.references}")
    for why in failed.values():
        _say(f"failed: {why}")
    return 1 if failed else 0


def measure(args: argparse.Namespace) -> int:
    """The device run: the cells with the carried references, then (asked) the rest."""
    started = time.perf_counter()
    info = framework_info(FRAMEWORKS)  # asked once (a worker imports both): every sweep below reuses it
    try:
        check_devices(config(args, args.device), info)
    except DeviceUnavailable as exc:
        _say(f"device_run: {exc}")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cache = ReferenceCache(args.references)
    with open_store(args.out / STORE) as store:
        done = run_sweep(config(args, args.device), store, cache, Lines, _say, info)
        for name, reason in done.unavailable.items():
            _say(f"skipped {name}: {reason}")
        _say(f"{done.planned} cells, {done.stored} stored ({done.statuses}), {done.timed} timed, "
             f"{done.gradients} gradients; bandwidth limit {done.bandwidth_limits}")
        missing = sum(done.lost_to_harness.values())
        if missing and args.compute_missing:
            engine = DEFAULT_ENGINE if flint is not None else "mpmath"
            _say(f"{missing} cells had no carried reference: computing their references here with the {engine} "
                 f"engine")
            done = run_sweep(config(args, args.device, engine, compute=True), store, cache, Lines, _say, info)
            _say(f"then {done.stored} stored, references in {done.reference_seconds:.1f} s")
            missing = sum(done.lost_to_harness.values())
        for reason, count in done.lost_to_harness.most_common():
            _say(f"not measured: {count} cells: {reason}")
    _say(f"device run: {time.perf_counter() - started:.1f} s; store {args.out / STORE}")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder of the device run's store (the device run)")
    parser.add_argument("--prepare", action="store_true", help="compute the references to carry (the CPU machine)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--references", type=Path, default=REFERENCES)
    parser.add_argument("--loss", nargs="+", default=list(registry.names()), choices=list(registry.names()))
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--reference-size", type=int, default=min(SIZES),
                        help="the largest size whose references are carried")
    parser.add_argument("--jobs", type=int, default=4, help="worker processes for the untimed cells")
    parser.add_argument("--cell-timeout", type=float, default=120.0)
    parser.add_argument("--compute-missing", action="store_true",
                        help="compute references not carried, here (mpmath alone without python-flint: slow)")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args)
    if args.out is None:
        parser.error("--out DIR is needed (or --prepare)")
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
