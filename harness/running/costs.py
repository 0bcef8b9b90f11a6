"""What a sweep would cost, said before anything runs (`lossbench sweep --plan`).

Counts come from the plan itself: cells, input sets, reference items and
gradient components still missing from the store and the reference cache.
Seconds come from rates measured on this machine: a reference item's, by
settling a small sample of each loss's typical inputs now (per loss, per
narrow or float64 dtype, value or gradient: the float64 pre-pass and exact
rational paths make them differ by orders of magnitude); a cell's, fitted to
the cells earlier runs stored (seconds = a + b x elements, per framework,
timed and untimed apart). Other regimes cost more than typical inputs where
items escalate, so the reference estimate is a lower bound.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.measure.quantity import LossGradient, Quantity
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import InputSet
from harness.model import registry
from harness.model.spec import Layout

SAMPLE_ITEMS = 300


@dataclass(frozen=True)
class Estimate:
    cells: int  # in the grid
    tasks: int  # still to measure
    timed: int
    input_sets: int
    value_sets: int  # whose value reference is not cached
    value_items: int
    gradient_sets: int
    gradient_items: int  # derivative components
    reference_seconds: float
    cell_seconds: float | None  # None: no stored cells to take rates from
    cell_basis: str

    @property
    def cpu_hours(self) -> float | None:
        return None if self.cell_seconds is None else (self.reference_seconds + self.cell_seconds) / 3600


def _components(inputset: InputSet, items: int) -> int:
    return items * (inputset.width if registry.get(inputset.loss).layout is Layout.ROWWISE else 1)


def reference_rate(loss: str, dtype: str, quantity: Quantity, rates: dict[tuple[str, str, str], float]) -> float:
    """Seconds per item (a row for row-wise losses) of ``quantity`` on typical inputs
    of ``loss`` in a dtype like ``dtype``, measured once on a small sample."""
    kind = "float64" if dtype == "float64" else "narrow"
    key = (loss, kind, type(quantity).__name__)
    if key not in rates:
        sample = InputSet.with_defaults(loss, "float64" if kind == "float64" else "float32", "typical")
        size = SAMPLE_ITEMS * sample.width
        started = time.perf_counter()
        quantity.compute(sample, [size])
        rates[key] = (time.perf_counter() - started) / sample.items(size)
    return rates[key]


def cell_rates(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, bool], tuple[float, float]]:
    """(framework, timed) -> (a, b) of seconds = a + b x elements, least squares over
    the stored ok cells (a and b kept non-negative)."""
    points: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for r in rows:
        if r["status"] == "ok" and r["seconds"] is not None:
            points.setdefault((r["framework"], r["forward_seconds"] is not None), []).append(
                (float(r["size"]), float(r["seconds"])))
    fits = {}
    for key, found in points.items():
        x, y = np.array([p[0] for p in found]), np.array([p[1] for p in found])
        if len(set(x.tolist())) > 1:
            b, a = np.polyfit(x, y, 1)
        else:
            a, b = float(np.median(y)), 0.0
        fits[key] = (max(float(a), 0.0), max(float(b), 0.0))
    return fits


def estimate(tasks: Sequence[Any], cells: int, references: Mapping[tuple[InputSet, Quantity], Sequence[int]],
             cache: ReferenceCache, stored_rows: Iterable[Mapping[str, Any]]) -> Estimate:
    """The cost of ``tasks`` (CellTasks) and of the ``references`` (set, quantity ->
    sizes) the cache lacks."""
    rates: dict[tuple[str, str, str], float] = {}
    value_sets = gradient_sets = value_items = gradient_items = 0
    reference_seconds = 0.0
    for (inputset, quantity), sizes in references.items():
        if cache.has(inputset, sizes, quantity):
            continue
        items = inputset.items(max(sizes))
        reference_seconds += items * reference_rate(inputset.loss, inputset.dtype, quantity, rates)
        if not isinstance(quantity, LossGradient):
            value_sets, value_items = value_sets + 1, value_items + items
        else:
            gradient_sets, gradient_items = gradient_sets + 1, gradient_items + _components(inputset, items)
    fits = cell_rates(stored_rows)
    cell_seconds: float | None = 0.0
    missing = sorted({t.framework for t in tasks if (t.framework, t.time) not in fits})
    if not fits:
        cell_seconds, basis = None, "no stored cells to take rates from: run a quick sweep first"
    else:
        for t in tasks:
            a, b = fits.get((t.framework, t.time)) or max(fits.values(), key=lambda f: f[0] + f[1] * 1e5)
            cell_seconds += a + b * t.size
        basis = f"rates fitted to the stored cells of {', '.join(sorted({f for f, _ in fits}))}" + \
            (f"; {', '.join(missing)} priced as the dearest stored framework" if missing else "")
    return Estimate(cells, len(tasks), sum(t.time for t in tasks), len({s for s, _ in references}), value_sets,
                    value_items, gradient_sets, gradient_items, reference_seconds, cell_seconds, basis)


def hours_on(estimate: Estimate, workers: Sequence[int] = (1, 2, 8, 32, 128)) -> list[str]:
    """Wall hours on N workers, if the work divided perfectly (timed cells need a host each)."""
    if estimate.cpu_hours is None:
        return []
    return [f"{n} workers: {estimate.cpu_hours / n:,.2f} h" for n in workers]
