"""The ``lossbench`` command line. Bad input of any kind ends with one line on
stderr naming the problem and exit code 2; a framework that raises is reported
as that framework's error (exit 1), never as a traceback."""
from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm import tqdm

from harness import adapters, atlas, bandwidth, registry, report
from harness.adapters import FRAMEWORKS, FrameworkUnavailable
from harness.evaluate import evaluate, evaluate_gradient, json_number, reference_decimal
from harness.inputs import InputError, parse_json, prepare
from harness.recommend import Recommendation, recommend
from harness.refsets import ReferenceCache
from harness.spec import ALL_REGIMES, DEVICES, DTYPES, REDUCTIONS, Case, LossSpec, Result
from harness.store import DEFAULT_DB, Store, StoreError
from harness.sweep import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMED_REGIMES, SweepConfig, default_config, run_sweep
from reference.formats import FORMATS

LIST_WHAT = ("losses", "frameworks", "dtypes", "devices")


class UsageError(Exception):
    """Bad input from the user: reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lossbench", description="Accuracy of deep-learning losses against an mpmath reference.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    listing = commands.add_parser("list", help="what this installation can evaluate")
    listing.add_argument("what", nargs="?", choices=LIST_WHAT, help="one section (default: all)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    ev = commands.add_parser("eval", help="evaluate one loss on one input against the reference")
    ev.add_argument("loss")
    ev.add_argument("--framework", required=True, choices=list(FRAMEWORKS))
    ev.add_argument("--impl", help="implementation (default: numpy 'stable', else the framework's only one)")
    ev.add_argument("--dtype", required=True, choices=DTYPES)
    ev.add_argument("--device", default="cpu", choices=DEVICES)
    ev.add_argument("--reduction", choices=REDUCTIONS, help="default: the loss's own (mean; sum for penalties)")
    ev.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="loss parameter, repeatable")
    ev.add_argument("--input", required=True, metavar="JSON")
    ev.add_argument("--target", metavar="JSON", help="required unless the loss has no target (penalties)")
    ev.add_argument("--arg", action="append", default=[], metavar="NAME=JSON", help="extra argument, repeatable")
    ev.add_argument("--grad", action="store_true",
                    help="also the gradient of the reduced loss with respect to input, against the reference derivative")
    ev.add_argument("--json", action="store_true", help="print one JSON object")

    sw = commands.add_parser("sweep", help="measure many cells into the results store (resumable)")
    grid = sw.add_mutually_exclusive_group()
    grid.add_argument("--quick", dest="full", action="store_false", help="sizes 10..1e5, width 10 (default)")
    grid.add_argument("--full", dest="full", action="store_true", help="sizes 10..1e7, widths 10 and 1000")
    sw.add_argument("--loss", nargs="+", action="extend", metavar="L")
    sw.add_argument("--framework", nargs="+", action="extend", metavar="F", choices=list(FRAMEWORKS))
    sw.add_argument("--impl", nargs="+", action="extend", metavar="I")
    sw.add_argument("--dtype", nargs="+", action="extend", metavar="D", choices=DTYPES)
    sw.add_argument("--device", nargs="+", action="extend", metavar="D", choices=DEVICES)
    sw.add_argument("--regime", nargs="+", action="extend", metavar="R", choices=ALL_REGIMES)
    sw.add_argument("--sizes", nargs="+", action="extend", metavar="N", type=_positive_int)
    sw.add_argument("--seeds", type=_positive_int, default=1, metavar="K", help="seeds 0..K-1 (default 1)")
    sw.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1, metavar="N",
                    help="worker processes (default: one per core)")
    sw.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S",
                    help=f"per-cell time limit in seconds (default {DEFAULT_CELL_TIMEOUT:g})")
    sw.add_argument("--time", action="store_true",
                    help="also time forward and forward+backward, after measuring the memory bandwidth")
    sw.add_argument("--time-regime", nargs="+", action="extend", metavar="R", choices=ALL_REGIMES,
                    help=f"regimes to time (default {' '.join(DEFAULT_TIMED_REGIMES)})")
    sw.add_argument("--grad", action="store_true",
                    help="also measure each cell's gradient with respect to input against the reference derivative")
    sw.add_argument("--grad-regime", nargs="+", action="extend", metavar="R", choices=ALL_REGIMES,
                    help="regimes whose gradients to measure (default: every regime swept)")
    sw.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    sw.add_argument("--no-progress", action="store_true", help="no progress bars")
    sw.set_defaults(full=False)

    bw = commands.add_parser("bandwidth", help="this machine's memory bandwidth, STREAM-like, per framework")
    bw.add_argument("--framework", nargs="+", action="extend", metavar="F", choices=list(FRAMEWORKS))
    bw.add_argument("--device", default="cpu", choices=DEVICES)
    bw.add_argument("--elements", type=_positive_int, default=bandwidth.DEFAULT_ELEMENTS, metavar="N",
                    help=f"float64 elements per array (default {bandwidth.DEFAULT_ELEMENTS})")
    bw.add_argument("--json", action="store_true", help="one JSON list of kernel results")

    at = commands.add_parser("atlas", help="how each framework computes each loss, found by running it")
    at.add_argument("--loss", nargs="+", action="extend", metavar="L")
    at.add_argument("--framework", nargs="+", action="extend", metavar="F", choices=list(FRAMEWORKS))
    at.add_argument("--dtype", nargs="+", action="extend", metavar="D", choices=DTYPES,
                    help="dtypes of the edge inputs (default float32)")
    at.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store the atlas here (default {DEFAULT_DB})")
    at.add_argument("--no-store", action="store_true", help="print only, store nothing")
    at.add_argument("--all-edges", action="store_true", help="list every edge input, not only the deviations")
    at.add_argument("--json", action="store_true", help="one JSON list of entries")
    at.add_argument("--no-progress", action="store_true", help="no progress bar")

    rp = commands.add_parser("report", help="figures, index.html and summary.md from the results store")
    rp.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    rp.add_argument("--out", type=Path, default=report.DEFAULT_OUT, help=f"output folder (default {report.DEFAULT_OUT})")
    rp.add_argument("--asv-results", type=Path, default=report.DEFAULT_ASV_RESULTS, metavar="DIR",
                    help=f"asv results for the speed history, if present (default {report.DEFAULT_ASV_RESULTS})")

    rc = commands.add_parser("recommend", help="the fastest measured choice for a loss within an accuracy bound")
    rc.add_argument("--loss", required=True)
    rc.add_argument("--size", type=_positive_int, metavar="N", help="input elements (default: the largest timed)")
    rc.add_argument("--device", default="cpu", choices=DEVICES)
    rc.add_argument("--regime", default="typical", choices=ALL_REGIMES)
    bound = rc.add_mutually_exclusive_group(required=True)
    bound.add_argument("--max-ulp", type=_positive_float, metavar="X", help="worst ULP error allowed")
    bound.add_argument("--max-rel-error", type=_positive_float, metavar="X", help="worst relative error allowed")
    rc.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    rc.add_argument("--json", action="store_true", help="print one JSON object")

    rn = commands.add_parser("run", help="the main job: quick CPU sweep (timing and gradients on typical inputs), "
                                         "the atlas, then the report")
    rn.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"results store (default {DEFAULT_DB})")
    rn.add_argument("--out", type=Path, default=report.DEFAULT_OUT, help=f"report folder (default {report.DEFAULT_OUT})")
    rn.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1, metavar="N",
                    help="worker processes for the reference and accuracy cells (default: one per core)")
    rn.add_argument("--no-progress", action="store_true", help="no progress bars")

    res = commands.add_parser("results", help="export stored cells (or gradients), one record per cell")
    res.add_argument("--db", type=Path, default=DEFAULT_DB)
    res.add_argument("--format", choices=("table", "csv", "json"), default="table")
    res.add_argument("--worst", type=_positive_int, metavar="N",
                     help="only the N least accurate cells (unexpected non-finite first, then max ulp)")
    what = res.add_mutually_exclusive_group()
    what.add_argument("--speed", action="store_true", help="timed cells only, with their timing columns")
    what.add_argument("--grad", action="store_true",
                      help="gradient rows, with the forward max ulp of the same cell beside them")
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0 or value != float(text):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _split_assignment(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value


def _parse_params(items: Sequence[str]) -> dict[str, float]:
    params = {}
    for item in items:
        name, text = _split_assignment(item, "--param")
        try:
            params[name] = float(text)
        except ValueError:
            raise UsageError(f"--param {name} needs a number, got {text!r}") from None
    return params


def _load_framework(name: str) -> adapters.Adapter:
    try:
        return adapters.load(name)
    except FrameworkUnavailable as exc:
        raise UsageError(str(exc)) from None


def _chosen_frameworks(names: Sequence[str] | None) -> list[str]:
    """The frameworks named (each must load: a missing one is a usage error), else every available one."""
    if not names:
        return [row["name"] for row in _framework_rows() if row["available"]]
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        _load_framework(name)
    return chosen


def _spec(name: str) -> LossSpec:
    try:
        return registry.get(name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _case_from_args(args: argparse.Namespace) -> tuple[Case, dict[str, Any]]:
    spec = _spec(args.loss)
    adapter = _load_framework(args.framework)
    impls = adapter.impl_names(spec.name)
    if not impls:
        raise UsageError(f"{args.framework} has no implementation of {spec.name}")
    impl = args.impl or ("stable" if "stable" in impls else impls[0])
    if impl not in impls:
        raise UsageError(f"{args.framework} has no impl {impl!r} for {spec.name} (impls: {', '.join(impls)})")
    if args.device not in adapter.devices():
        raise UsageError(f"device {args.device} is not available to {args.framework} here "
                         f"(available: {', '.join(adapter.devices())})")
    try:
        params = spec.resolve_params(_parse_params(args.param))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    raw = {"input": parse_json(args.input, "--input")}
    if args.target is not None:
        raw["target"] = parse_json(args.target, "--target")
    for item in args.arg:
        name, text = _split_assignment(item, "--arg")
        if name in raw:
            raise UsageError(f"argument {name!r} given twice")
        raw[name] = parse_json(text, f"--arg {name}")
    reduction = args.reduction or spec.default_reduction
    case = Case(spec.name, args.framework, impl, args.dtype, args.device, reduction, tuple(params.items()))
    return case, raw


def result_json(result: Result, version: str) -> dict[str, Any]:
    case = result.case
    per_item = case.reduction == "none"

    def shaped(values: Sequence[Any]) -> Any:
        if not values:
            return None
        return list(values) if per_item else values[0]

    settled = [r.settled for r in result.reference]
    return {
        "loss": case.loss,
        "framework": case.framework,
        "framework_version": version,
        "impl": case.impl,
        "dtype": case.dtype,
        "device": case.device,
        "reduction": case.reduction,
        "params": dict(case.params),
        "value": shaped([json_number(v) for v in result.values]),
        "result_dtype": result.result_dtype,
        "reference": shaped([reference_decimal(r.value) if r.settled else None for r in result.reference]),
        "reference_float64": shaped([json_number(float(r.value)) if r.settled else None for r in result.reference]),
        "reference_rounded": shaped([json_number(v) if r.settled else None
                                     for v, r in zip(result.reference_rounded, result.reference)]),
        "reference_status": shaped(["settled" if s else "unsettled" for s in settled]),
        "reference_precision_bits": max(r.precision for r in result.reference),
        "ulp_error": shaped(list(result.ulp_errors)),
        "rel_error": shaped([json_number(v) for v in result.rel_errors]),
        "nonfinite": shaped(list(result.nonfinite)),
        "error": result.error,
    }


def gradient_json(result: Result, shape: Sequence[int], method: str) -> dict[str, Any]:
    """The gradient's fields of eval's JSON: lists shaped like the input; a null
    reference where it is unsettled or where the loss has no derivative (the
    status says which)."""
    def shaped(values: Sequence[Any]) -> Any:
        return np.array(list(values), dtype=object).reshape(tuple(shape)).tolist() if values else None

    refs = result.reference
    known = [r.value is not None and r.settled for r in refs]
    return {
        "grad": shaped([json_number(v) for v in result.values]),
        "grad_result_dtype": result.result_dtype,
        "grad_method": method,
        "grad_reference": shaped([reference_decimal(r.value) if k else None for r, k in zip(refs, known)]),
        "grad_reference_rounded": shaped([json_number(v) if k else None for v, k in zip(result.reference_rounded, known)]),
        "grad_reference_status": shaped(["undefined" if r.value is None else "settled" if r.settled else "unsettled"
                                         for r in refs]),
        "grad_ulp_error": shaped(list(result.ulp_errors)),
        "grad_rel_error": shaped([json_number(v) for v in result.rel_errors]),
        "grad_nonfinite": shaped(list(result.nonfinite)),
        "grad_error": result.error,
    }


def _format_float(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


def _print_table(record: dict[str, Any]) -> None:
    head = (f"{record['loss']}  {record['framework']} {record['framework_version']}  impl {record['impl']}  "
            f"{record['dtype']} on {record['device']}  reduction {record['reduction']}")
    if record["params"]:
        head += "  " + " ".join(f"{k}={v:g}" for k, v in record["params"].items())
    print(head)
    if record["result_dtype"] not in (None, record["dtype"]):
        print(f"  note: {record['framework']} returned {record['result_dtype']}, not {record['dtype']}")
    if record["error"]:
        print(f"  framework error: {record['error']}")
    listed = record["reduction"] == "none"
    columns = ("value", "reference", "reference_status", "ulp_error", "rel_error", "nonfinite")
    rows = [[record[c] for c in columns]] if not listed else list(zip(*(record[c] or [None] * len(record["reference"])
                                                                     for c in columns)))
    titles = ("item", "value", "reference", "status", "ulp error", "rel error", "non-finite")
    table = [titles] + [(str(i) if listed else "-", repr(r[0]) if isinstance(r[0], float) else str(r[0] or "-"),
                         r[1] or "unsettled", r[2], _format_float(r[3]), _format_float(r[4]), r[5] or "-")
                        for i, r in enumerate(rows)]
    _print_aligned(table, "  ")
    print(f"  reference precision: {record['reference_precision_bits']} bits")


def _print_gradient(record: dict[str, Any]) -> None:
    print(f"  gradient ({record['grad_method']}):")
    if record["grad_result_dtype"] not in (None, record["dtype"]):
        print(f"  note: the gradient came back as {record['grad_result_dtype']}, not {record['dtype']}")
    if record["grad_error"]:
        print(f"  gradient error: {record['grad_error']}")
        return
    columns = [np.array(record[c], dtype=object).ravel() for c in
               ("grad", "grad_reference", "grad_reference_status", "grad_ulp_error", "grad_rel_error", "grad_nonfinite")]
    table = [("element", "gradient", "reference", "status", "ulp error", "rel error", "non-finite")]
    for i, (value, ref, status, ulp, rel, cls) in enumerate(zip(*columns)):
        table.append((str(i), repr(value) if isinstance(value, float) else str(value), ref or "-", status,
                      _format_float(ulp), _format_float(rel), cls or "-"))
    _print_aligned(table, "    ")


def _command_eval(args: argparse.Namespace) -> int:
    case, raw = _case_from_args(args)
    arrays = prepare(registry.get(case.loss), raw, case.dtype)
    if args.grad and case.reduction == "none":
        raise UsageError("--grad needs a reduced loss: use --reduction mean or sum")
    result = evaluate(case, arrays)
    adapter = adapters.load(case.framework)
    record = result_json(result, adapter.version())
    failed = bool(result.error)
    if args.grad:
        grad = evaluate_gradient(case, arrays)
        record.update(gradient_json(grad, arrays["input"].shape, adapter.gradient_method))
        failed = failed or bool(grad.error)
    if args.json:
        print(json.dumps(record))
    else:
        _print_table(record)
        if args.grad:
            _print_gradient(record)
    return 1 if failed else 0


def _framework_rows() -> list[dict[str, Any]]:
    rows = []
    for name in FRAMEWORKS:
        try:
            adapter = adapters.load(name)
        except FrameworkUnavailable as exc:
            rows.append({"name": name, "available": False, "version": adapters.installed_version(name),
                         "impls": [], "devices": [], "reason": str(exc)})
            continue
        rows.append({"name": name, "available": True, "version": adapter.version(),
                     "impls": list(adapter.impls), "devices": adapter.devices(), "reason": None})
    return rows


def _listing(what: str) -> list[dict[str, Any]]:
    if what == "losses":
        return [{"name": s.name, "family": s.family, "layout": s.layout.value, "definition": s.definition,
                 "args": {a.name: a.domain.value + (" (one per row)" if a.per_row else "") for a in s.args},
                 "params": {p.name: p.default for p in s.params}} for s in registry.iter_losses()]
    if what == "frameworks":
        return _framework_rows()
    if what == "dtypes":
        return [{"name": f.name, "precision_bits": f.precision, "emin": f.emin, "emax": f.emax,
                 "epsilon": 2.0 ** (1 - f.precision), "max": float(f.max_finite),
                 "smallest_subnormal": float(f.smallest_subnormal)} for f in FORMATS.values()]
    rows = _framework_rows()
    return [{"name": device, "frameworks": [r["name"] for r in rows if device in r["devices"]]} for device in DEVICES]


def _print_listing(what: str, rows: list[dict[str, Any]]) -> None:
    print(f"{what}:")
    for row in rows:
        if what == "losses":
            params = " ".join(f"{k}={v:g}" for k, v in row["params"].items())
            print(f"  {row['name']:<20} {row['family']:<15} {row['layout']:<12} {row['definition']}"
                  + (f"  [{params}]" if params else ""))
        elif what == "frameworks":
            state = (f"{row['version']}  impls: {', '.join(row['impls'])}  devices: {', '.join(row['devices'])}"
                     if row["available"] else f"unavailable: {row['reason']}")
            print(f"  {row['name']:<12} {state}")
        elif what == "dtypes":
            print(f"  {row['name']:<9} {row['precision_bits']:>2}-bit significand  eps {row['epsilon']:.3g}  "
                  f"max {row['max']:.4g}  min subnormal {row['smallest_subnormal']:.3g}")
        else:
            print(f"  {row['name']:<5} {', '.join(row['frameworks']) or 'no framework sees this device'}")


def _command_list(args: argparse.Namespace) -> int:
    sections = [args.what] if args.what else list(LIST_WHAT)
    listings = {what: _listing(what) for what in sections}
    if args.json:
        print(json.dumps(listings[args.what] if args.what else listings))
    else:
        for what, rows in listings.items():
            _print_listing(what, rows)
    return 0


def _sweep_config(args: argparse.Namespace) -> SweepConfig:
    defaults = default_config(quick=not args.full)
    for loss in args.loss or ():
        _spec(loss)
    frameworks = tuple(dict.fromkeys(args.framework or defaults["frameworks"]))
    chosen = [FRAMEWORKS[name] for name in frameworks]
    if args.impl and all(fw.impls is not None for fw in chosen):
        impls = {impl for fw in chosen for impl in fw.impls or ()}
        for impl in args.impl:
            if impl not in impls:
                raise UsageError(f"unknown impl {impl!r}; expected one of {', '.join(sorted(impls))}")
    if args.cell_timeout <= 0:
        raise UsageError("--cell-timeout must be positive")
    if args.grad_regime and not args.grad:
        raise UsageError("--grad-regime needs --grad")
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
        sizes=tuple(sorted(set(args.sizes or defaults["sizes"]))),
        widths=defaults["widths"],
        seeds=args.seeds, jobs=args.jobs, cell_timeout=args.cell_timeout,
        time=args.time, timed_regimes=tuple(dict.fromkeys(args.time_regime or DEFAULT_TIMED_REGIMES)),
        grad=args.grad, grad_regimes=tuple(dict.fromkeys(args.grad_regime)) if args.grad_regime else None,
    )


def _command_sweep(args: argparse.Namespace) -> int:
    _sweep(_sweep_config(args), args.db, args.no_progress)
    return 0


def _sweep(config: SweepConfig, db: Path, no_progress: bool) -> None:
    """Run the sweep into ``db`` and print what it did."""
    progress = None if no_progress else functools.partial(tqdm, file=sys.stderr, mininterval=1.0)
    cache = ReferenceCache(db.parent / "refcache")
    with _opened(db) as store:
        done = run_sweep(config, store, cache, progress)
    for name, reason in done.unavailable.items():
        print(f"skipped {name}: {reason}")
    if done.planned == 0:
        raise UsageError("the filters select no cell (check --framework, --impl, --device and --regime)")
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


@contextmanager
def _opened(db: Path, made_by: str | None = None) -> Iterator[Store]:
    """The store at ``db`` (created if absent, unless ``made_by`` names the command
    that makes it); a missing or unreadable store is a usage error."""
    if made_by and not db.exists():
        raise UsageError(f"no results store at {db}; run '{made_by}' first")
    try:
        store = Store(db)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def _command_report(args: argparse.Namespace) -> int:
    print(f"report: {_report(args.db, args.out, args.asv_results)}")
    return 0


def _report(db: Path, out: Path, asv_results: Path = report.DEFAULT_ASV_RESULTS) -> Path:
    """Write the report; returns the path of its index.html."""
    with _opened(db, "lossbench sweep") as store:
        written = report.build(store, out, asv_results)
    print(f"{len(written.figures)} figures: {', '.join(f.file for f in written.figures)}")
    return written.index.resolve()


def _command_recommend(args: argparse.Namespace) -> int:
    loss = _spec(args.loss).name
    metric, bound = ("ulp", args.max_ulp) if args.max_ulp is not None else ("rel", args.max_rel_error)
    with _opened(args.db, "lossbench sweep --time") as store:
        found = recommend(store.cells(), loss, metric, bound, args.size, args.device, args.regime)
    if args.json:
        print(json.dumps(found.to_json()))
    else:
        _print_recommendation(found)
    return 0 if found.choice else 1


def _print_recommendation(found: Recommendation) -> None:
    unit = "ulp" if found.metric == "ulp" else "relative error"
    size = f"{found.size:g} elements" if found.size else "no timed size"
    print(f"{found.loss} at {size} on {found.device}, {found.regime} inputs, worst error <= {found.bound:g} {unit}:")
    if found.choice is None:
        print("  nothing measured qualifies")
    for rank, c in enumerate(found.qualifying):
        lead = "  use " if rank == 0 else "    runner-up "
        upcast = f" (returns {c.result_dtype}: measured against {c.dtype})" if c.result_dtype != c.dtype else ""
        print(f"{lead}{c.label}: {c.seconds * 1e6:.4g} us per call, worst {c.error:.3g} {unit}{upcast}")
    if found.excluded:
        print("  excluded:")
        for e in found.excluded:
            print(f"    {e.label}: {e.reason}")


def _command_run(args: argparse.Namespace) -> int:
    """The main job: what `make run` does."""
    # Timing and gradients on typical inputs, accuracy on every regime: the gradient
    # reference of every regime would double the cold run (sweep --grad does it).
    config = SweepConfig(**default_config(quick=True), jobs=args.jobs, time=True, grad=True,
                         grad_regimes=DEFAULT_TIMED_REGIMES)
    print(f"lossbench run: quick sweep of {len(config.losses)} losses into {args.db}; timing and gradients on "
          f"{', '.join(DEFAULT_TIMED_REGIMES)} inputs", flush=True)
    _sweep(config, args.db, args.no_progress)
    entries = _atlas(list(registry.names()), _chosen_frameworks(None), ["float32"], args.no_progress)
    _store_atlas(args.db, entries)
    print(f"atlas: {len(entries)} entries stored")
    print(_report(args.db, args.out))
    return 0


def _command_bandwidth(args: argparse.Namespace) -> int:
    results = []
    for name in _chosen_frameworks(args.framework):
        adapter = _load_framework(name)
        if args.device not in adapter.devices():
            raise UsageError(f"{name} has no {args.device} device here")
        results.extend(bandwidth.measure(adapter, args.device, args.elements))
    rows = [{"framework": r.framework, "device": r.device, "kernel": r.kernel, "elements": r.elements,
             "bytes_moved": r.bytes_moved, "best_seconds": r.best_seconds, "median_seconds": r.median_seconds,
             "gbps": r.gbps} for r in results]
    if args.json:
        print(json.dumps(rows))
        return 0
    _print_rows(rows, ("framework", "device", "kernel", "elements", "bytes_moved", "best_seconds", "gbps"))
    print(f"limit ({args.device}): {bandwidth.limit(results, args.device) or 0:.2f} GB/s, the best rate above")
    return 0


RESULT_COLUMNS = ("loss", "framework", "impl", "dtype", "device", "regime", "size", "status", "result_dtype",
                  "max_ulp", "p99_ulp", "median_ulp", "reduced_ulp", "unexpected_nonfinite", "error")
GRADIENT_COLUMNS = ("loss", "framework", "impl", "dtype", "device", "regime", "size", "status", "method",
                    "max_ulp", "p99_ulp", "median_ulp", "forward_max_ulp", "undefined", "unexpected_nonfinite",
                    "error")
SPEED_COLUMNS = ("loss", "framework", "impl", "dtype", "device", "regime", "size", "forward_seconds",
                 "elements_per_s", "forward_gbps", "forward_bw_fraction", "backward_method", "backward_seconds",
                 "backward_bw_fraction", "backward_error")


def _command_results(args: argparse.Namespace) -> int:
    with _opened(args.db, "lossbench sweep") as store:
        rows = list(store.gradients() if args.grad else store.cells())
    if args.speed:
        rows = [r for r in rows if r["forward_seconds"] is not None]
    if args.worst:
        rows = sorted(rows, key=_badness, reverse=True)[:args.worst]
    if args.format == "json":
        print(json.dumps(rows))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["loss"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_rows(rows, SPEED_COLUMNS if args.speed else GRADIENT_COLUMNS if args.grad else RESULT_COLUMNS)
    return 0


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    _print_aligned([tuple(columns)] + [tuple(report.format_cell(r[c])[:60] for c in columns) for r in rows])


def _print_aligned(table: Sequence[Sequence[Any]], indent: str = "") -> None:
    """Rows of cells in left-aligned columns."""
    widths = [max(len(str(row[k])) for row in table) for k in range(len(table[0]))]
    for row in table:
        print((indent + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths))).rstrip())


def _badness(row: dict[str, Any]) -> tuple[int, float]:
    return (row["unexpected_nonfinite"] or 0, row["max_ulp"] if row["max_ulp"] is not None else -1.0)


def _atlas(losses: list[str], frameworks: list[str], dtypes: list[str], no_progress: bool) -> list[dict[str, Any]]:
    planned = [(f, loss, impl, dtype) for f, loss, impl in atlas.plan(losses, frameworks) for dtype in dtypes]
    bar = tqdm(planned, desc="atlas", unit="entry", file=sys.stderr, disable=no_progress, mininterval=1.0)
    return [atlas.entry(*item).to_json() for item in bar]


def _store_atlas(db: Path, entries: list[dict[str, Any]]) -> None:
    with _opened(db) as store:
        for entry in entries:
            store.put_atlas(entry)


def _command_atlas(args: argparse.Namespace) -> int:
    losses = [_spec(loss).name for loss in dict.fromkeys(args.loss or registry.names())]
    entries = _atlas(losses, _chosen_frameworks(args.framework), list(dict.fromkeys(args.dtype or ["float32"])),
                     args.no_progress)
    if not args.no_store:
        _store_atlas(args.db, entries)
    if args.json:
        print(json.dumps(entries))
        return 0
    for entry in entries:
        print("\n".join(atlas.describe(entry, args.all_edges)))
    if not args.no_store:
        print(f"stored {len(entries)} atlas entries in {args.db}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        commands = {"list": _command_list, "eval": _command_eval, "sweep": _command_sweep,
                    "results": _command_results, "atlas": _command_atlas, "bandwidth": _command_bandwidth,
                    "report": _command_report, "recommend": _command_recommend, "run": _command_run}
        return commands[args.command](args)
    except (UsageError, InputError) as exc:
        print(f"lossbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001  a bug must still not print a traceback at users
        if os.environ.get("LOSSBENCH_DEBUG"):
            raise
        print(f"lossbench: internal error: {type(exc).__name__}: {exc} (set LOSSBENCH_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
