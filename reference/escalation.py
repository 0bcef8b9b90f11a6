"""Precision escalation: a reference value is accepted only once it is settled.

Each item is evaluated at p bits and at 2p bits. It is settled when both
evaluations round to the same float64 and to the same value in the target
format, and differ by far less than a float64 ulp; otherwise p is doubled for
that item. Past ``max_prec`` the value is reported unsettled, never guessed.
Formulas marked exact need one evaluation. A formula may return a tuple (the
components of a derivative); the item then settles when every component does. A reduction (mean or sum of any
prefix of the items) is settled the same way, from the items' last two levels;
if those disagree the whole reduction is escalated.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import mpmath
from mpmath.libmp import libmpf

from reference.formats import FORMATS, BinaryFormat, is_midpoint, mpf_ulp_exponent, round_mpf
from reference.mpexact import exact_total, is_exact

Reduction = Literal["mean", "sum", "none"]

START_PREC = 80
MAX_PREC = 5120
# How far below a float64 ulp two evaluations must agree (2**-AGREEMENT_BITS ulp).
AGREEMENT_BITS = 8
_FLOAT64 = FORMATS["float64"]

Formula = Callable[..., mpmath.mpf]


@dataclass(frozen=True)
class RefValue:
    """One reference number: the highest-precision estimate and whether it settled."""

    value: mpmath.mpf
    settled: bool
    precision: int


@dataclass(frozen=True)
class SettledItems:
    """Per-item references plus each item's previous-level value, from which the
    reduction of any prefix can be settled without recomputing the items."""

    refs: list[RefValue]
    previous: list[mpmath.mpf]


def agree(low: mpmath.mpf, high: mpmath.mpf, fmt: BinaryFormat) -> bool:
    """Whether two evaluations of the same quantity settle it for ``fmt``."""
    low_raw, high_raw = low._mpf_, high._mpf_
    if not low_raw[1] or not high_raw[1]:  # a zero or a special value: the slow, careful path
        if mpmath.isnan(low) or mpmath.isnan(high):
            return bool(mpmath.isnan(low) and mpmath.isnan(high))
        if mpmath.isinf(low) or mpmath.isinf(high):
            return low == high
    if low_raw == high_raw:
        return True
    _, gap_man, gap_exp, gap_bits = libmpf.mpf_sub(low_raw, high_raw)  # exact
    if gap_man and gap_exp + gap_bits > mpf_ulp_exponent(high, _FLOAT64) - AGREEMENT_BITS:
        return False  # |gap| may exceed 2**-AGREEMENT_BITS float64 ulp
    rounded = round_mpf(high, _FLOAT64)
    if round_mpf(low, _FLOAT64) != rounded:
        return False
    # Both lie within half a float64 ulp of `rounded`, so a rounding boundary of the
    # narrower format can lie between them only if `rounded` is one.
    return not is_midpoint(rounded, fmt) or round_mpf(low, fmt) == round_mpf(high, fmt)


def agree_values(low: Any, high: Any, fmt: BinaryFormat) -> bool:
    """``agree`` for a scalar, or component by component for a tuple (a derivative);
    an undefined (None) component settles only as undefined at both levels."""
    if not isinstance(low, tuple):
        return agree(low, high, fmt)
    return all(a is None and b is None if a is None or b is None else agree(a, b, fmt) for a, b in zip(low, high))


def settle_items(
    formula: Formula, items: Sequence[tuple[Any, ...]], fmt: BinaryFormat,
    start_prec: int = START_PREC, max_prec: int = MAX_PREC,
) -> SettledItems:
    """Escalate item by item: only the items that have not settled are recomputed.
    Equal items are settled once (edge inputs and half-precision inputs repeat)."""
    if not is_exact(formula):
        slots: dict[Any, int] = {}
        where = [slots.setdefault(_key(item), len(slots)) for item in items]
        if len(slots) < len(items):
            unique: list[tuple[Any, ...]] = [()] * len(slots)
            for item, slot in zip(items, where):
                unique[slot] = item
            once = settle_items(formula, unique, fmt, start_prec, max_prec)
            return SettledItems([once.refs[s] for s in where], [once.previous[s] for s in where])

    def at(prec: int, indices: Sequence[int]) -> dict[int, mpmath.mpf]:
        with mpmath.workprec(prec):
            return {i: formula(*items[i]) for i in indices}

    if is_exact(formula):
        values = at(start_prec, range(len(items)))
        return SettledItems([RefValue(values[i], True, start_prec) for i in range(len(items))],
                            [values[i] for i in range(len(items))])
    refs: list[RefValue | None] = [None] * len(items)
    previous: list[mpmath.mpf | None] = [None] * len(items)
    pending = list(range(len(items)))
    prec = start_prec
    low = at(prec, pending)
    while pending and prec * 2 <= max_prec:
        prec *= 2
        high = at(prec, pending)
        still = []
        for i in pending:
            if agree_values(low[i], high[i], fmt):
                refs[i], previous[i] = RefValue(high[i], True, prec), low[i]
            else:
                still.append(i)
        pending, low = still, high
    for i in pending:
        refs[i], previous[i] = RefValue(low[i], False, prec), low[i]
    return SettledItems([r for r in refs if r is not None], [p for p in previous if p is not None])


def _key(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """A hashable stand-in for an item (rows are lists); nan never equals itself, so
    items holding nan are simply not shared."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in item)


def settle_totals(
    low_total: mpmath.mpf, high_total: mpmath.mpf, count: int, precision: int, all_settled: bool,
    reduction: Reduction, fmt: BinaryFormat, recompute: Callable[[int], mpmath.mpf], max_prec: int = MAX_PREC,
) -> RefValue:
    """Mean or sum of ``count`` items from the exact totals of their last two levels
    (``precision`` being the highest item precision; the totals are equal for exact
    formulas): divided at p and 2p bits and settled like an item. When the two
    disagree (the sum cancels), ``recompute(prec)`` gives the exact total of the
    items evaluated at ``prec`` and precision keeps doubling."""
    def finish(total: mpmath.mpf, prec: int) -> mpmath.mpf:
        with mpmath.workprec(prec):
            return total / count if reduction == "mean" else +total

    prec = 2 * precision
    high = finish(high_total, prec)
    if not all_settled:
        return RefValue(high, False, prec)
    low = finish(low_total, precision)
    while not agree(low, high, fmt):
        if prec * 2 > max_prec:
            return RefValue(high, False, prec)
        prec *= 2
        low, high = high, finish(recompute(prec), prec)
    return RefValue(high, True, prec)


def settle_reduction(
    formula: Formula, items: Sequence[tuple[Any, ...]], settled: SettledItems, count: int,
    reduction: Reduction, fmt: BinaryFormat, max_prec: int = MAX_PREC,
) -> RefValue:
    """Mean or sum of the first ``count`` items, from their settled levels."""
    refs = settled.refs[:count]

    def recompute(prec: int) -> mpmath.mpf:
        with mpmath.workprec(prec):
            return exact_total([formula(*item) for item in items[:count]])

    return settle_totals(exact_total(settled.previous[:count]), exact_total([r.value for r in refs]), count,
                         max(r.precision for r in refs), all(r.settled for r in refs), reduction, fmt,
                         recompute, max_prec)


def evaluate(
    formula: Formula, items: Sequence[tuple[Any, ...]], reduction: Reduction, fmt: BinaryFormat,
    start_prec: int = START_PREC, max_prec: int = MAX_PREC,
) -> RefValue | list[RefValue]:
    """Settled reference of ``formula`` over ``items`` (argument tuples of exact mpf /
    int values). Returns one RefValue per item for reduction 'none', else one."""
    if not items:
        raise ValueError("the reference needs at least one item")
    settled = settle_items(formula, items, fmt, start_prec, max_prec)
    if reduction == "none":
        return settled.refs
    return settle_reduction(formula, items, settled, len(items), reduction, fmt, max_prec)
