"""What this installation offers and how its frameworks compute: lossbench list,
bandwidth and atlas."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

from tqdm import tqdm

from harness.adapters import FRAMEWORKS
from harness.measure import atlas, bandwidth
from harness.measure.environment import FrameworkInfo, describe_frameworks
from harness.model import registry
from harness.model.spec import DEVICES, DTYPES
from harness.present import render
from harness.present.options import (
    Command, UsageError, chosen_frameworks, framework_rows, load_framework, loss_spec, opened, positive_int,
)
from harness.running.workers import Failure, WorkerPool, sharing_compiled
from harness.store import DEFAULT_DB
from reference.formats import FORMATS

LIST_WHAT = ("losses", "frameworks", "dtypes", "devices")


def listing(what: str) -> list[dict[str, Any]]:
    if what == "losses":
        return [{"name": s.name, "family": s.family, "layout": s.layout.value, "definition": s.definition,
                 "args": {a.name: a.domain.value + (" (one per row)" if a.per_row else "") for a in s.args},
                 "params": {p.name: p.default for p in s.params}} for s in registry.iter_losses()]
    if what == "frameworks":
        return framework_rows()
    if what == "dtypes":
        return [{"name": f.name, "precision_bits": f.precision, "emin": f.emin, "emax": f.emax,
                 "epsilon": 2.0 ** (1 - f.precision), "max": float(f.max_finite),
                 "smallest_subnormal": float(f.smallest_subnormal)} for f in FORMATS.values()]
    rows = framework_rows()
    return [{"name": device, "frameworks": [r["name"] for r in rows if device in r["devices"]]} for device in DEVICES]


def build_atlas(losses: list[str], frameworks: Mapping[str, FrameworkInfo], dtypes: list[str], no_progress: bool,
                stored: Iterable[dict[str, Any]] = (), jobs: int | None = None) -> list[dict[str, Any]]:
    """The atlas entries of these losses, frameworks (as found: this process imports
    none) and dtypes, but for those among ``stored`` that the same code and framework
    version made (nothing to redo), made by ``jobs`` worker processes (default one
    per core). An entry whose worker fails is named on stderr and left out: the next
    run makes it."""
    known = {(e["loss"], e["framework"], e["impl"], e["dtype"]): e for e in stored}
    planned = [(f, loss, impl, dtype) for f, loss, impl in atlas.plan(losses, frameworks) for dtype in dtypes
               if not atlas.is_current(known.get((loss, f, impl, dtype)), frameworks[f].version or "")]
    jobs = jobs or os.cpu_count() or 1
    made: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    with tqdm(total=len(planned), desc="atlas", unit="entry", file=sys.stderr, disable=no_progress,
              mininterval=1.0) as bar, sharing_compiled() as environment, \
            WorkerPool(jobs, max(1, (os.cpu_count() or 1) // jobs), environment) as pool:
        # A worker keeps to one framework: each is imported, and its kernels compiled, in one process.
        for item, outcome in pool.run(atlas.entry_json, planned, lambda item: ATLAS_ENTRY_LIMIT, lambda item: item[0]):
            if isinstance(outcome, Failure):
                print(f"lossbench: warning: atlas entry {' '.join(item)} not made ({outcome.kind}): "
                      f"{outcome.message}", file=sys.stderr)
            else:
                made[item] = outcome
            bar.update(1)
    return [made[item] for item in planned if item in made]


# An atlas entry runs a few dozen small calls: one taking this long is stuck.
ATLAS_ENTRY_LIMIT = 600.0


def store_atlas(db: Path, entries: list[dict[str, Any]]) -> None:
    with opened(db) as store:
        for entry in entries:
            store.put_atlas(entry)


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=LIST_WHAT, help="one section (default: all)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _run_list(args: argparse.Namespace) -> int:
    sections = [args.what] if args.what else list(LIST_WHAT)
    listings = {what: listing(what) for what in sections}
    if args.json:
        print(json.dumps(listings[args.what] if args.what else listings))
    else:
        for what, rows in listings.items():
            render.print_listing(what, rows)
    return 0


def _bandwidth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", nargs="+", action="extend", metavar="F", choices=list(FRAMEWORKS))
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--elements", type=positive_int, default=bandwidth.DEFAULT_ELEMENTS, metavar="N",
                        help=f"float64 elements per array (default {bandwidth.DEFAULT_ELEMENTS})")
    parser.add_argument("--json", action="store_true", help="one JSON list of kernel results")


def _run_bandwidth(args: argparse.Namespace) -> int:
    results = []
    for name in chosen_frameworks(args.framework):
        adapter = load_framework(name)
        if args.device not in adapter.devices():
            raise UsageError(f"{name} has no {args.device} device here")
        results.extend(bandwidth.measure(adapter, args.device, args.elements))
    rows = [{"framework": r.framework, "device": r.device, "kernel": r.kernel, "elements": r.elements,
             "bytes_moved": r.bytes_moved, "best_seconds": r.best_seconds, "median_seconds": r.median_seconds,
             "gbps": r.gbps} for r in results]
    if args.json:
        print(json.dumps([dict(r) for r in rows]))
        return 0
    render.print_rows(rows, ("framework", "device", "kernel", "elements", "bytes_moved", "best_seconds", "gbps"))
    print(f"limit ({args.device}): {bandwidth.limit(results, args.device) or 0:.2f} GB/s, the best rate above")
    return 0


def _atlas_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loss", nargs="+", action="extend", metavar="L")
    parser.add_argument("--framework", nargs="+", action="extend", metavar="F", choices=list(FRAMEWORKS))
    parser.add_argument("--dtype", nargs="+", action="extend", metavar="D", choices=DTYPES,
                        help="dtypes of the edge inputs (default float32)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store the atlas here (default {DEFAULT_DB})")
    parser.add_argument("--no-store", action="store_true", help="print only, store nothing")
    parser.add_argument("--all-edges", action="store_true", help="list every edge input, not only the deviations")
    parser.add_argument("--json", action="store_true", help="one JSON list of entries")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_atlas(args: argparse.Namespace) -> int:
    losses = [loss_spec(loss).name for loss in dict.fromkeys(args.loss or registry.names())]
    # The frameworks named (a missing one is a usage error), else all: planning skips the unavailable.
    found = describe_frameworks(tuple(chosen_frameworks(args.framework) if args.framework else FRAMEWORKS))
    entries = build_atlas(losses, found, list(dict.fromkeys(args.dtype or ["float32"])), args.no_progress)
    if not args.no_store:
        store_atlas(args.db, entries)
    if args.json:
        print(json.dumps(entries))
        return 0
    for entry in entries:
        print("\n".join(render.describe(entry, args.all_edges)))
    if not args.no_store:
        print(f"stored {len(entries)} atlas entries in {args.db}")
    return 0


COMMANDS = (
    Command("list", "what this installation can evaluate", _list_arguments, _run_list),
    Command("bandwidth", "this machine's memory bandwidth, STREAM-like, per framework",
            _bandwidth_arguments, _run_bandwidth),
    Command("atlas", "how each framework computes each loss, found by running it",
            _atlas_arguments, _run_atlas),
)
