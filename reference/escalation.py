"""Precision escalation: a reference value is accepted only once it is settled.

An item (or a reduction over items) is evaluated at p bits and at 2p bits. It is
settled when both evaluations round to the same float64 and to the same value in
the target format, and differ by far less than a float64 ulp; otherwise p is
doubled. Past ``max_prec`` the value is reported unsettled, never guessed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import mpmath

from reference.formats import FORMATS, BinaryFormat, mpf_ulp_exponent, round_mpf
from reference.formulas import exact_sum

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[Reduction, ...] = ("mean", "sum", "none")

START_PREC = 80
MAX_PREC = 5120
# How far below a float64 ulp two evaluations must agree (2**-AGREEMENT_BITS ulp).
AGREEMENT_BITS = 8


@dataclass(frozen=True)
class RefValue:
    """One reference number: the highest-precision estimate and whether it settled."""

    value: mpmath.mpf
    settled: bool
    precision: int


def agree(low: mpmath.mpf, high: mpmath.mpf, fmt: BinaryFormat) -> bool:
    """Whether two evaluations of the same quantity settle it for ``fmt``."""
    if mpmath.isnan(low) or mpmath.isnan(high):
        return bool(mpmath.isnan(low) and mpmath.isnan(high))
    if mpmath.isinf(low) or mpmath.isinf(high):
        return low == high
    float64 = FORMATS["float64"]
    if round_mpf(low, float64) != round_mpf(high, float64) or round_mpf(low, fmt) != round_mpf(high, fmt):
        return False
    gap = abs(mpmath.fsub(low, high, exact=True))
    return gap <= mpmath.ldexp(1, mpf_ulp_exponent(high, float64) - AGREEMENT_BITS)


def _reduce(values: Sequence[mpmath.mpf], reduction: Reduction) -> mpmath.mpf:
    total = exact_sum(values)
    return total / len(values) if reduction == "mean" else total


def evaluate(
    formula: Callable[..., mpmath.mpf],
    items: Sequence[tuple[Any, ...]],
    reduction: Reduction,
    fmt: BinaryFormat,
    start_prec: int = START_PREC,
    max_prec: int = MAX_PREC,
) -> RefValue | list[RefValue]:
    """Settled reference of ``formula`` over ``items`` (argument tuples of exact mpf /
    int values). Returns one RefValue per item for reduction 'none', else one."""
    if not items:
        raise ValueError("the reference needs at least one item")

    def at(prec: int, indices: Sequence[int]) -> list[mpmath.mpf]:
        with mpmath.workprec(prec):
            return [formula(*items[i]) for i in indices]

    if reduction == "none":
        return _escalate_items(at, len(items), fmt, start_prec, max_prec)

    def reduced(prec: int) -> mpmath.mpf:
        with mpmath.workprec(prec):
            return _reduce(at(prec, range(len(items))), reduction)

    prec = start_prec
    low = reduced(prec)
    while prec * 2 <= max_prec:
        prec *= 2
        high = reduced(prec)
        if agree(low, high, fmt):
            return RefValue(high, True, prec)
        low = high
    return RefValue(low, False, prec)


def _escalate_items(
    at: Callable[[int, Sequence[int]], list[mpmath.mpf]],
    count: int,
    fmt: BinaryFormat,
    start_prec: int,
    max_prec: int,
) -> list[RefValue]:
    """Escalate item by item: only the items that have not settled are recomputed."""
    results: list[RefValue | None] = [None] * count
    pending = list(range(count))
    prec = start_prec
    low = dict(zip(pending, at(prec, pending)))
    while pending and prec * 2 <= max_prec:
        prec *= 2
        high = dict(zip(pending, at(prec, pending)))
        still = []
        for i in pending:
            if agree(low[i], high[i], fmt):
                results[i] = RefValue(high[i], True, prec)
            else:
                still.append(i)
        pending, low = still, high
    for i in pending:
        results[i] = RefValue(low[i], False, prec)
    return [r for r in results if r is not None]
