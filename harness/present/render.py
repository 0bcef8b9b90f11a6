"""Text and JSON for every command: what a user reads, in one place."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.measure.deviations import EXACT, EXPECTED
from harness.measure.numbers import json_number, reference_decimal
from harness.model.spec import Result
from harness.present.compare import MATCHED_ON, Comparison
from harness.present.recommend import Recommendation

def format_cell(value: Any) -> str:
    """A stored value in a table: '-' for null, 3 significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_float(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


def print_aligned(table: Sequence[Sequence[Any]], indent: str = "") -> None:
    """Rows of cells in left-aligned columns."""
    widths = [max(len(str(row[k])) for row in table) for k in range(len(table[0]))]
    for row in table:
        print((indent + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths))).rstrip())


def print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print_aligned([tuple(columns)] + [tuple(format_cell(r[c])[:60] for c in columns) for r in rows])


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
        "mode": case.mode,
        "reduction": case.reduction,
        "params": dict(case.params),
        "value": shaped([json_number(v) for v in result.values]),
        "result_dtype": result.result_dtype,
        "reference": shaped([reference_decimal(r) if r.settled else None for r in result.reference]),
        "reference_float64": shaped([json_number(r.pair[0]) if r.settled else None for r in result.reference]),
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
        "grad_reference": shaped([reference_decimal(r) if k else None for r, k in zip(refs, known)]),
        "grad_reference_rounded": shaped([json_number(v) if k else None for v, k in zip(result.reference_rounded, known)]),
        "grad_reference_status": shaped(["undefined" if r.value is None else "settled" if r.settled else "unsettled"
                                         for r in refs]),
        "grad_ulp_error": shaped(list(result.ulp_errors)),
        "grad_rel_error": shaped([json_number(v) for v in result.rel_errors]),
        "grad_nonfinite": shaped(list(result.nonfinite)),
        "grad_error": result.error,
    }


def print_eval(record: dict[str, Any]) -> None:
    head = (f"{record['loss']}  {record['framework']} {record['framework_version']}  impl {record['impl']}  "
            f"{record['dtype']} on {record['device']}  {record['mode']}  reduction {record['reduction']}")
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
                         r[1] or "unsettled", r[2], format_float(r[3]), format_float(r[4]), r[5] or "-")
                        for i, r in enumerate(rows)]
    print_aligned(table, "  ")
    print(f"  reference precision: {record['reference_precision_bits']} bits")


def print_gradient(record: dict[str, Any]) -> None:
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
                      format_float(ulp), format_float(rel), cls or "-"))
    print_aligned(table, "    ")


def print_listing(what: str, rows: list[dict[str, Any]]) -> None:
    print(f"{what}:")
    for row in rows:
        if what == "losses":
            params = " ".join(f"{k}={v:g}" for k, v in row["params"].items())
            print(f"  {row['name']:<20} {row['family']:<15} {row['layout']:<12} {row['definition']}"
                  + (f"  [{params}]" if params else ""))
        elif what == "frameworks":
            state = (f"{row['version']}  impls: {', '.join(row['impls'])}  devices: {', '.join(row['devices'])}  "
                     f"modes: {', '.join(row['modes'])}" if row["available"] else f"unavailable: {row['reason']}")
            print(f"  {row['name']:<12} {state}")
        elif what == "dtypes":
            print(f"  {row['name']:<9} {row['precision_bits']:>2}-bit significand  eps {row['epsilon']:.3g}  "
                  f"max {row['max']:.4g}  min subnormal {row['smallest_subnormal']:.3g}")
        else:
            print(f"  {row['name']:<5} {', '.join(row['frameworks']) or 'no framework sees this device'}")


def print_recommendation(found: Recommendation) -> None:
    unit = "ulp" if found.metric == "ulp" else "relative error"
    size = f"{found.size:g} elements" if found.size else "no measured size"
    print(f"{found.loss} at {size} on {found.device}, {found.regime} inputs, worst error <= {found.bound:g} {unit}:")
    if found.qualifying and not found.timed:
        print("  speed was not measured at this size (run the sweep with --time): ranked by accuracy")
    if found.choice is None:
        print("  nothing measured qualifies")
    for rank, c in enumerate(found.qualifying):
        lead = "  use " if rank == 0 else "    runner-up "
        upcast = f" (returns {c.result_dtype}: measured against {c.dtype})" if c.result_dtype != c.dtype else ""
        speed = f"{c.seconds * 1e6:.4g} us per call, " if c.seconds is not None else ""
        print(f"{lead}{c.label}: {speed}worst {c.error:.3g} {unit}{upcast}")
    if found.excluded:
        print("  excluded:")
        for e in found.excluded:
            print(f"    {e.label}: {e.reason}")


def describe(entry: dict[str, Any], all_edges: bool = False, limit: int = 12) -> list[str]:
    """Text lines for one stored entry (AtlasEntry.to_json())."""
    lines = [f"{entry['loss']} · {entry['framework']} {entry['framework_version']} · {entry['impl']} · {entry['dtype']}"]
    for call in entry["api"]:
        passed = ", ".join(f"{k}={v!r}" for k, v in call["passed"])
        lines.append(f"  calls     {call['api']}({passed})")
        if call["defaults"]:
            lines.append("  defaults  " + ", ".join(f"{k}={v!r}" for k, v in call["defaults"]))
    if entry["composed"]:
        code = entry["composed"].splitlines()
        lines.append(f"  composed  {code[0]}" + (f"  (+{len(code) - 1} lines)" if len(code) > 1 else ""))
    if entry["settings"]:
        lines.append("  settings  " + ", ".join(f"{k} = {v!r}" for k, v in entry["settings"].items()))
    casts = [f"{asked} -> {got}" for asked, got in entry["result_dtypes"].items() if asked != got]
    lines.append("  dtypes    " + (", ".join(casts) if casts else "returns every dtype it is given"))
    lines.append(f"  mean      divides the sum by {entry['mean_divides_by']}")
    counts = ", ".join(f"{name} {n}" for name, n in entry["deviation_counts"].items())
    lines.append(f"  edges     {len(entry['edges'])} inputs: {counts}")
    listed = [p for p in entry["edges"] if all_edges or p["deviation"] not in EXPECTED]
    for probe in listed[:limit if not all_edges else None]:
        inputs = " ".join(f"{k}={v}" for k, v in probe["inputs"].items())
        ulp = f" ({probe['ulp']:.3g} ulp)" if probe["ulp"] is not None and probe["deviation"] != EXACT else ""
        lines.append(f"    {probe['deviation']:<14} {inputs}: {probe['value']} vs exact {probe['reference']}{ulp}"
                     + (f"  [{probe['note']}]" if probe["note"] else ""))
    if len(listed) > limit and not all_edges:
        lines.append(f"    ... {len(listed) - limit} more (--all-edges lists them)")
    compiled = entry.get("compiled")
    if compiled and "error" in compiled:
        lines.append(f"  compiled  fails: {compiled['error']}")
    elif compiled:
        worst = f", up to {compiled['max_ulp']:.3g} ulp" if compiled["max_ulp"] is not None else ""
        nonfinite = f", {compiled['nonfinite_differ']} of them not finite in one mode" \
            if compiled["nonfinite_differ"] else ""
        reduced = compiled["reduced"]
        mean = "the same" if reduced["ulp"] == 0 else \
            f"{reduced['compiled']} vs eager {reduced['eager']}" + \
            (f" ({reduced['ulp']:.3g} ulp)" if reduced["ulp"] is not None else "")
        lines.append(f"  compiled  differs from eager on {compiled['differ']} of {compiled['items']} edge inputs"
                     f"{worst}{nonfinite}; typical {entry['dtype']} reduced: {mean}")
        for example in compiled["examples"]:
            inputs = " ".join(f"{k}={v}" for k, v in example["inputs"].items())
            ulp = f" ({example['ulp']:.3g} ulp)" if example["ulp"] is not None else ""
            lines.append(f"    {inputs}: compiled {example['compiled']} vs eager {example['eager']}{ulp}")
    return lines


_SHOWN_KEY = tuple(c for c in MATCHED_ON if c not in ("params", "width", "seed"))
_TITLES = {"less_accurate": "less accurate", "failed": "failed", "slower": "slower",
           "more_accurate": "more accurate", "fixed": "fixed", "faster": "faster"}


def print_comparison(found: Comparison) -> None:
    """Each group of changed cells as a table (worse first), then the cells on one side only."""
    print(f"base {found.base}  ->  head {found.head}: {found.matched} cells matched "
          f"(on their key without the framework version)")
    for framework, (before, after) in found.versions.items():
        print(f"  {framework}: {', '.join(before) or '-'} -> {', '.join(after) or '-'}")
    for group in Comparison.GROUPS:
        changes = getattr(found, group)
        if not changes:
            continue
        print(f"\n{_TITLES[group]} ({len(changes)}):")
        index = [MATCHED_ON.index(c) for c in _SHOWN_KEY]
        print_aligned([(*_SHOWN_KEY, "what", "base", "head")]
                      + [(*(format_cell(c.cell[i]) for i in index), c.what, format_cell(c.base)[:40],
                          format_cell(c.head)[:40]) for c in changes], "  ")
    for side, cells in (("base", found.base_only), ("head", found.head_only)):
        if cells:
            print(f"\n{len(cells)} cells only in {side}" + (", e.g. " + " ".join(
                format_cell(cells[0][MATCHED_ON.index(c)]) for c in _SHOWN_KEY) if cells else ""))
    print("\nsomething got worse" if found.worse else "\nnothing got worse")
