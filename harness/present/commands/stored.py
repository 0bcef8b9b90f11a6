"""Reading the results store: lossbench results, report and recommend."""
from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.model.spec import ALL_REGIMES, DEVICES, MODES
from harness.present import compare, render, report
from harness.present.options import Command, UsageError, loss_spec, opened, positive_float, positive_int
from harness.present.recommend import recommend
from harness.store import DEFAULT_DB, KEY_COLUMNS, SCHEMA_VERSION, SHOWN_TIMING_COLUMNS, Store, StoreError, inspect

# What a table shows of a row: the cell (key columns that vary in a sweep), then the row's own.
_CELL = tuple(c for c in KEY_COLUMNS if c not in ("params", "framework_version", "width", "seed"))  # with mode
RESULT_COLUMNS = (*_CELL, "status", "result_dtype", "max_ulp", "max_bits", "p99_ulp", "median_ulp", "reduced_ulp",
                  "unexpected_nonfinite", "error")
GRADIENT_COLUMNS = (*_CELL, "status", "method", "max_ulp", "max_bits", "p99_ulp", "median_ulp", "forward_max_ulp",
                    "undefined", "unexpected_nonfinite", "error")
SPEED_COLUMNS = (*_CELL, *SHOWN_TIMING_COLUMNS)


def _badness(row: dict[str, Any]) -> tuple[int, float]:
    return (row["unexpected_nonfinite"] or 0, row["max_ulp"] if row["max_ulp"] is not None else -1.0)


def report_folder(out: Path) -> Path:
    """``out`` made a folder lossbench may write (usage error otherwise): not a
    file, not under a file, not read-only."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"--out {out} is under a file, not a folder") from None
    except OSError as exc:
        raise UsageError(f"--out {out} cannot be made: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} cannot be written: "
                         f"{os.strerror(errno.EROFS) if _read_only_mount(out) else 'permission denied'}")
    return out


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def write_report(db: Path, out: Path, asv_results: Path = report.DEFAULT_ASV_RESULTS,
                 baseline: compare.Side | None = None, jobs: int = 1) -> Path:
    """Write the report (with a "changes since" section against ``baseline``; figures
    drawn by ``jobs`` processes); returns the path of its index.html."""
    report_folder(out)
    changes = None
    if baseline is not None:
        with opened(db, "lossbench sweep") as store:
            head = list(store.cells())
        changes = compare.compare(baseline, _side_rows(baseline), compare.Side(db), head)
    with opened(db, "lossbench sweep") as store:
        written = report.build(store, out, asv_results, changes, jobs)
    print(f"{len(written.figures)} figures: {', '.join(f.file for f in written.figures)}")
    return written.index.resolve()


def _results_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--worst", type=positive_int, metavar="N",
                        help="only the N least accurate cells (unexpected non-finite first, then max ulp)")
    parser.add_argument("--mode", choices=MODES, help="only cells run in this mode (default: every mode)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--speed", action="store_true", help="timed cells only, with their timing columns")
    what.add_argument("--grad", action="store_true",
                      help="gradient rows, with the forward max ulp of the same cell beside them")


def _run_results(args: argparse.Namespace) -> int:
    with opened(args.db, "lossbench sweep") as store:
        rows = list(store.gradients() if args.grad else store.cells())
    if args.mode:
        rows = [r for r in rows if r["mode"] == args.mode]
    if args.speed:
        rows = [r for r in rows if r["forward_seconds"] is not None]
    if args.worst:
        rows = sorted(rows, key=_badness, reverse=True)[:args.worst]
    if args.format == "json":
        print(json.dumps([dict(r) for r in rows]))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["loss"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        render.print_rows(rows, SPEED_COLUMNS if args.speed else GRADIENT_COLUMNS if args.grad else RESULT_COLUMNS)
    return 0


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    parser.add_argument("--out", type=Path, default=report.DEFAULT_OUT, help=f"output folder (default {report.DEFAULT_OUT})")
    parser.add_argument("--asv-results", type=Path, default=report.DEFAULT_ASV_RESULTS, metavar="DIR",
                        help=f"asv results for the speed history, if present (default {report.DEFAULT_ASV_RESULTS})")
    parser.add_argument("--baseline", metavar="STORE[:RUN_ID]",
                        help="add a section of what changed since this store or run (as lossbench compare)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="processes drawing the figures (default: one per core)")


def _run_report(args: argparse.Namespace) -> int:
    baseline = compare.Side.parse(args.baseline) if args.baseline else None
    print(f"report: {write_report(args.db, args.out, args.asv_results, baseline, args.jobs)}")
    return 0


def _recommend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loss", required=True)
    parser.add_argument("--size", type=positive_int, metavar="N", help="input elements (default: the largest timed)")
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--regime", default="typical", choices=ALL_REGIMES)
    parser.add_argument("--mode", choices=MODES, help="only choices run in this mode (default: eager and compiled "
                                                     "side by side)")
    bound = parser.add_mutually_exclusive_group(required=True)
    bound.add_argument("--max-ulp", type=positive_float, metavar="X", help="worst ULP error allowed")
    bound.add_argument("--max-rel-error", type=positive_float, metavar="X", help="worst relative error allowed")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run_recommend(args: argparse.Namespace) -> int:
    loss = loss_spec(args.loss).name
    metric, bound = ("ulp", args.max_ulp) if args.max_ulp is not None else ("rel", args.max_rel_error)
    with opened(args.db, "lossbench sweep --time") as store:
        found = recommend(store.cells(), loss, metric, bound, args.size, args.device, args.regime, args.mode)
    if args.json:
        print(json.dumps(found.to_json()))
    else:
        render.print_recommendation(found)
    return 0 if found.choice else 1


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="a results store, or STORE:RUN_ID for its cells as of that run")
    parser.add_argument("head", metavar="HEAD", help="the same for the other side")
    parser.add_argument("--ulp-factor", type=positive_float, default=compare.ULP_FACTOR, metavar="F",
                        help=f"less accurate: worst ULP error up by more than F times and by at least "
                             f"{compare.ULP_MARGIN:g} ulp (default {compare.ULP_FACTOR:g})")
    parser.add_argument("--time-factor", type=positive_float, default=compare.TIME_FACTOR, metavar="F",
                        help=f"slower: time up by more than F times and by more than {compare.STDEVS:g} timer "
                             f"standard deviations (default {compare.TIME_FACTOR:g})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _side_rows(side: compare.Side) -> list[Any]:
    with opened(side.path, "lossbench sweep") as store:
        if side.run_id is not None and side.run_id not in {run.id for run in store.runs()}:
            ids = [run.id for run in store.runs()]
            raise UsageError(f"{side.path} has no run {side.run_id} "
                             f"({'runs ' + ', '.join(map(str, ids)) if ids else 'no runs'})")
        return compare.as_of(store.cells(), side.run_id)


def _run_compare(args: argparse.Namespace) -> int:
    base, head = compare.Side.parse(args.base), compare.Side.parse(args.head)
    found = compare.compare(base, _side_rows(base), head, _side_rows(head), args.ulp_factor, args.time_factor)
    if args.json:
        print(json.dumps(found.to_json()))
    else:
        render.print_comparison(found)
    return 1 if found.worse else 0


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", metavar="STORE", nargs="+", type=Path,
                        help="stores to bring in (a device run's, another machine's)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"the store they go into (default {DEFAULT_DB})")


def _run_merge(args: argparse.Namespace) -> int:
    """Each store read as it is (one of an earlier schema is upgraded in a copy,
    never in place), then merged into --db."""
    target = args.db.resolve()
    for path in args.stores:
        if path.resolve() == target:
            raise UsageError(f"{path} is the store being merged into (--db)")
    with opened(args.db) as store:
        for path in args.stores:
            with _as_current(path) as source:
                merged = store.merge(source)
            print(f"merged {path}: {merged.runs} runs, {merged.cells} cells, {merged.gradients} gradients, "
                  f"{merged.bandwidth} bandwidth results added; {merged.kept} rows kept as this store had them")
    return 0


@contextlib.contextmanager
def _as_current(path: Path) -> Iterator[Store]:
    """The store at ``path`` opened read-only, or a copy upgraded to this schema."""
    try:
        version = inspect(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    if version is None:
        raise UsageError(f"no results store at {path}" if not path.exists() else f"{path} holds no results yet")
    if version == SCHEMA_VERSION:
        with opened(path, "a sweep") as source:
            yield source
        return
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as original, \
                contextlib.closing(sqlite3.connect(copy)) as duplicate:
            original.backup(duplicate)
        with opened(copy) as source:
            yield source


COMMANDS = (
    Command("results", "export stored cells (or gradients), one record per cell",
            _results_arguments, _run_results),
    Command("report", "figures, index.html and summary.md from the results store",
            _report_arguments, _run_report),
    Command("recommend", "the fastest measured choice for a loss within an accuracy bound",
            _recommend_arguments, _run_recommend),
    Command("compare", "cells that got less or more accurate, slower or faster between two stores or runs "
                       "(exit 1 when any got worse)", _compare_arguments, _run_compare),
    Command("merge", "bring other stores' runs and rows (a device run's) into the results store",
            _merge_arguments, _run_merge),
)
