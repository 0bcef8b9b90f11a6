"""Sound settlement: a reference value is accepted only when an enclosure proves it.

A formula evaluated in a rigorous arithmetic (reference.arith) gives an
enclosure [lower, upper] of the exact value. The value is settled when every
point of the enclosure has the same float64 pair (hi, lo) the store keeps (hi the
correctly rounded float64, lo the float64 nearest the remainder): the pair then
also decides the correct rounding into every narrower format. An enclosure
holding a rounding boundary or a midpoint escalates precision (doubling) for
that item only; a point enclosure (the value computed exactly) is settled even
on a midpoint. Past ``max_prec`` the item stays unsettled, never guessed.

A reduction (mean or sum of any prefix of the items) is settled the same way:
its enclosure is the exact sum of the items' endpoints (divided, for the mean,
with the lower end rounded down and the upper end rounded up).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import mpmath
import numpy as np
from mpmath.libmp import libmpf, to_float

from reference import formats
from reference.arith import Arithmetic, Raw, bounds, rational_bounds
from reference.mpexact import guarded_total, to_fraction

Reduction = Literal["mean", "sum", "none"]

START_PREC = 128  # the pair (hi, lo) needs about 107 bits; balls lose a few
MAX_PREC = 8192   # exact differences and squares of float64 values need up to ~4200
PREPASS_PRECISION = 53  # settled from the float64 pre-pass (reference.prepass): its rounding only
# An enclosure settled for its rounding only is at most 2**-20 of the format's spacing
# (inside its range) and 2**-36 of the value wide: ulp and relative errors measured
# from any point of it are those of the exact value to within 1e-6 ulp and 2**-36.
SPACING_BITS, RELATIVE_BITS = 20, 36
_FLOAT64 = formats.FORMATS["float64"]
_SMALLEST = math.ldexp(1.0, -1074)
_NAN = libmpf.fnan

Formula = Callable[..., Any]


@dataclass(frozen=True)
class RefValue:
    """One reference number: the enclosure of the exact value (raw mpf endpoints;
    None for a derivative that does not exist), whether it settled, and the
    precision that settled it (or the last one tried)."""

    lower: Raw | None
    upper: Raw | None
    settled: bool
    precision: int
    exact: Fraction | None = None  # the exact value, when it is a rational that is not dyadic
    known_pair: tuple[float, float] | None = None  # the pair, as settlement found it

    @property
    def value(self) -> mpmath.mpf | None:
        """The enclosure's midpoint (exact): any point of a settled enclosure has the
        same pair and roundings."""
        if self.lower is None or self.upper is None:
            return None
        if self.lower == self.upper:
            return mpmath.mp.make_mpf(self.lower)
        total = libmpf.mpf_add(self.lower, self.upper, 0)
        return mpmath.mp.make_mpf(libmpf.mpf_shift(total, -1) if total[1] else total)

    @property
    def pair(self) -> tuple[float, float]:
        if self.known_pair is not None:
            return self.known_pair
        if self.exact is not None:
            return split_rational(self.exact)
        value = self.value
        return split(value._mpf_) if value is not None else (math.nan, 0.0)

    @property
    def rational(self) -> Fraction | None:
        """The exact value as a rational, when it is known exactly and finite."""
        if self.exact is not None:
            return self.exact
        if self.lower is not None and self.lower == self.upper and self.lower[1]:
            return to_fraction(mpmath.mp.make_mpf(self.lower))
        if self.lower == libmpf.fzero and self.upper == libmpf.fzero:
            return Fraction(0)
        return None

    @classmethod
    def undefined(cls, settled: bool, precision: int) -> RefValue:
        return cls(None, None, settled, precision)


def split(raw: Raw) -> tuple[float, float]:
    """(hi, lo) of an exact value: hi the correctly rounded float64, lo the float64
    nearest the remainder. A non-zero remainder below float64's subnormals becomes
    +-2**-1074, so lo always tells on which side of hi the value lies (binades and
    ties depend on it); hi + lo is then within 2**-1074 of the value, else within
    2**-106 relative."""
    sign, man, exponent, bitcount = raw
    if not man:
        if exponent:
            return to_float(raw), 0.0  # inf or nan
        return 0.0, 0.0
    binade = exponent + bitcount - 1
    if not -960 <= binade <= 1022:  # near the ends of float64's range: the careful path
        return _slow_split(raw)
    top, shift = _nearest53(man)
    rest = man - (top << shift)
    hi = math.ldexp(top, exponent + shift)
    if not rest:
        lo = 0.0
    else:
        magnitude, rest_shift = _nearest53(abs(rest))
        if exponent + rest_shift + magnitude.bit_length() - 1 < -1021:
            return _slow_split(raw)  # lo subnormal
        lo = math.ldexp(magnitude, exponent + rest_shift)
        lo = -lo if rest < 0 else lo
    return (-hi, -lo) if sign else (hi, lo)


def _nearest53(m: int) -> tuple[int, int]:
    """(t, s) with t * 2**s the 53-bit nearest-even rounding of the positive integer m."""
    bits = m.bit_length()
    if bits <= 53:
        return m, 0
    shift = bits - 53
    top = m >> shift
    rest = m - (top << shift)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and top & 1):
        top += 1
    return top, shift


def split_rational(q: Fraction) -> tuple[float, float]:
    """``split`` of an exact rational: from its two neighbours 2**-120 of its size
    apart when they share their pair (integer arithmetic, fast), else exactly."""
    n, d = q.numerator, q.denominator
    if n:
        scale = 120 - (abs(n).bit_length() - d.bit_length())
        below = (n << scale) // d if scale >= 0 else n // (d << -scale)
        pair = settled_pair(libmpf.from_man_exp(below, -scale), libmpf.from_man_exp(below + 1, -scale))
        if pair is not None:
            return pair
    hi = formats.round_rational(q, _FLOAT64)
    if not math.isfinite(hi):
        return hi, 0.0
    remainder = q - Fraction(hi)
    lo = formats.round_rational(remainder, _FLOAT64)
    if lo == 0 and remainder:
        lo = -_SMALLEST if remainder < 0 else _SMALLEST
    return hi, lo


def _slow_split(raw: Raw) -> tuple[float, float]:
    value = mpmath.mp.make_mpf(raw)
    hi = formats.round_mpf(value, _FLOAT64)
    if not math.isfinite(hi):
        return hi, 0.0
    remainder = libmpf.mpf_sub(raw, libmpf.from_float(hi))  # exact
    lo = formats.round_mpf(mpmath.mp.make_mpf(remainder), _FLOAT64)  # one rounding, into subnormals too
    if lo == 0 and remainder[1]:
        lo = -_SMALLEST if remainder[0] else _SMALLEST
    return hi, lo


def settled_pair(lower: Raw, upper: Raw) -> tuple[float, float] | None:
    """The pair every point of [lower, upper] has, or None when they differ (split
    is monotone, so the two endpoints decide)."""
    if lower == upper:
        return split(lower)  # a point: the value is exact (or nan, the loss having no limit)
    if _NAN in (lower, upper):
        return None
    pair = split(lower)
    return pair if pair == split(upper) else None


def determined(lower: Raw, upper: Raw) -> bool:
    return settled_pair(lower, upper) is not None


Found = tuple  # (lower, upper, exact rational or None, pair or None)


def _enclosure(result: Any, c: Arithmetic) -> Found:
    lower, upper = bounds(c, result)
    if type(result) is Fraction:  # an exact rational settles by itself
        return lower, upper, result, split_rational(result)
    return lower, upper, None, settled_pair(lower, upper)


def _settles(result: Any, c: Arithmetic) -> tuple[bool, Any]:
    """(settled, enclosure) of a formula's result: a scalar, or a tuple of derivative
    components, None where the derivative does not exist."""
    if isinstance(result, tuple):
        parts = [None if v is None else _enclosure(v, c) for v in result]
        return all(p is None or p[3] is not None for p in parts), parts
    found = _enclosure(result, c)
    return found[3] is not None, found


def _ref(enclosure: Any, settled: bool, prec: int) -> Any:
    if isinstance(enclosure, list):
        return tuple(RefValue.undefined(settled, prec) if p is None else RefValue(*p[:2], settled, prec, *p[2:])
                     for p in enclosure)
    return RefValue(*enclosure[:2], settled, prec, *enclosure[2:])


def settle_items(formula: Formula, items: Sequence[tuple[Any, ...]], c: Arithmetic,
                 start_prec: int = START_PREC, max_prec: int = MAX_PREC) -> list[Any]:
    """One RefValue per item (a tuple of them for a derivative's components), each
    escalated alone until settled. Equal items are settled once (edge inputs and
    half-precision inputs repeat)."""
    slots: dict[Any, int] = {}
    where = [slots.setdefault(_key(item), len(slots)) for item in items]
    if len(slots) < len(items):
        unique: list[tuple[Any, ...]] = [()] * len(slots)
        for item, slot in zip(items, where):
            unique[slot] = item
        once = settle_items(formula, unique, c, start_prec, max_prec)
        return [once[s] for s in where]
    refs: list[Any] = [None] * len(items)
    pending = list(range(len(items)))
    prec = start_prec
    while pending:
        still = []
        with c.precision(prec), mpmath.workprec(prec):
            for i in pending:
                settled, enclosure = _settles(formula(c, *items[i]), c)
                if settled or prec * 2 > max_prec:
                    refs[i] = _ref(enclosure, settled, prec)
                else:
                    still.append(i)
        pending = still
        prec *= 2
    return refs


def _key(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """A hashable stand-in for an item (rows are lists); nan never equals itself, so
    items holding nan are simply not shared."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in item)


def exact_total(raws: Sequence[Raw]) -> Raw:
    """The sum of exact values, exact but for astronomically small terms
    (reference.mpexact.guarded_total)."""
    return guarded_total(raws)


Totals = tuple[Raw, Raw, "Fraction | None"]


def totals(refs: Sequence[RefValue]) -> Totals:
    """The exact sums of the items' lower and upper ends (the enclosure of their sum),
    and the exact sum itself when the items hold non-dyadic rationals, all known
    exactly (a mean of such items can be dyadic, which no enclosure proves)."""
    lower = exact_total([r.lower for r in refs])  # type: ignore[misc]
    upper = exact_total([r.upper for r in refs])  # type: ignore[misc]
    if not any(r.exact is not None for r in refs):
        return lower, upper, None
    values = [r.rational for r in refs]
    return lower, upper, None if any(v is None for v in values) else sum(values, Fraction(0))  # type: ignore[arg-type]


def float_totals(hi: np.ndarray, lo: np.ndarray) -> Totals:
    """The totals of exact values hi + lo (float64 arrays): their exact sum, a point,
    by integer arithmetic on the floats' mantissas."""
    values = np.concatenate([hi, lo])
    values = values[values != 0]
    if not len(values):
        return libmpf.fzero, libmpf.fzero, None
    fractions, exponents = np.frexp(values)
    mantissas = np.ldexp(fractions, 53).astype(np.int64)  # exact: 53-bit integers
    order = np.argsort(exponents, kind="stable")
    exponents, mantissas = exponents[order].astype(np.int64) - 53, mantissas[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(exponents)) + 1])
    # Halves of 27 and 26 bits: a sum of any chunk's count of them stays inside int64.
    high = np.add.reduceat(mantissas >> 26, starts)
    low = np.add.reduceat(mantissas & ((1 << 26) - 1), starts)
    base = int(exponents[0])
    total = sum(((int(h) << 26) + int(l)) << int(e - base) for h, l, e in zip(high, low, exponents[starts]))
    raw = libmpf.from_man_exp(total, base)
    return raw, raw, None


def add_totals(parts: Sequence[Totals]) -> Totals:
    """Totals of consecutive runs of items, summed."""
    exact = [p[2] for p in parts]
    rationals = [p[2] if p[2] is not None else RefValue(p[0], p[1], True, 0).rational for p in parts]
    known = any(e is not None for e in exact) and all(r is not None for r in rationals)
    return (exact_total([p[0] for p in parts]), exact_total([p[1] for p in parts]),
            sum(rationals, Fraction(0)) if known else None)  # type: ignore[arg-type]


def reduce(lower_total: Raw, upper_total: Raw, count: int, reduction: Reduction, prec: int) -> tuple[Raw, Raw]:
    """The enclosure of the mean or sum of ``count`` items from their summed ends."""
    if reduction == "sum":
        return lower_total, upper_total
    n = libmpf.from_int(count)
    # Divided 64 bits below the ends' last bits: the division rounds less than anything
    # the ends resolve (tails far below a head included).
    prec = max(prec, lower_total[3], upper_total[3]) + 64
    return libmpf.mpf_div(lower_total, n, prec, "f"), libmpf.mpf_div(upper_total, n, prec, "c")


def settle_totals(summed: Totals, count: int, precision: int, all_settled: bool,
                  reduction: Reduction, recompute: Callable[[int], Totals],
                  max_prec: int = MAX_PREC, rounding_only: formats.BinaryFormat | None = None) -> RefValue:
    """Mean or sum of ``count`` settled items (``precision`` the highest item
    precision) from their totals. When the enclosure holds a boundary (the sum
    cancels, or the mean of exact items lands near a tie), ``recompute(prec)``
    gives the totals of the items evaluated at ``prec`` and precision keeps
    doubling. An exact rational total settles at once. Items settled only for
    the rounding into a narrower format (the float64 pre-pass, ``rounding_only``)
    settle the reduction the same way when its enclosure decides that rounding
    and binade, at the pre-pass's precision (53)."""
    lower_total, upper_total, exact = summed
    if exact is not None and all_settled:
        value = exact / count if reduction == "mean" else exact
        if value.denominator & (value.denominator - 1) == 0:  # dyadic: a point
            point = libmpf.from_man_exp(value.numerator, 1 - value.denominator.bit_length())
            return RefValue(point, point, True, precision)
        with mpmath.workprec(2 * max(precision, START_PREC)):
            return RefValue(*rational_bounds(value), True, precision, value)
    prec = max(precision, START_PREC)  # items exact in float64 report precision 0
    while True:
        lower, upper = reduce(lower_total, upper_total, count, reduction, 2 * prec)
        if not all_settled:
            return RefValue(lower, upper, False, prec)
        if determined(lower, upper):
            return RefValue(lower, upper, True, prec)
        if rounding_only is not None and rounding_determined(lower, upper, rounding_only):
            return RefValue(lower, upper, True, PREPASS_PRECISION)
        rounding_only = None  # recomputed items are balls: their pair decides from here
        if prec * 2 > max_prec:
            return RefValue(lower, upper, False, prec)
        prec *= 2
        if lower_total != upper_total:  # exact items need only a finer division
            lower_total, upper_total, _ = recompute(prec)


def rounding_determined(lower: Raw, upper: Raw, fmt: formats.BinaryFormat) -> bool:
    """Whether every point of [lower, upper] (non-zero, finite) has one binade and one
    correct rounding into ``fmt`` (rounding is monotone: the ends decide), holds no
    number of ``fmt`` or float32 (so a result never measures a zero error it does
    not have), and is narrow enough (SPACING_BITS, RELATIVE_BITS) that any point of
    it measures errors as the exact value would."""
    if not (lower[1] and upper[1]) or lower[0] != upper[0] or _NAN in (lower, upper):
        return False
    low, high = mpmath.mp.make_mpf(lower), mpmath.mp.make_mpf(upper)
    if not (mpmath.isfinite(low) and mpmath.isfinite(high)):
        return False
    binade, rounded = formats.mpf_binade(low), formats.round_mpf(low, fmt)
    if binade != formats.mpf_binade(high) or rounded != formats.round_mpf(high, fmt):
        return False
    holds = formats.get_format("float32")
    if any(low <= formats.round_mpf(low, f) <= high for f in (fmt, holds)):
        return False  # a number of the format (or float32, where a framework upcasts) in it: no zero error is sure
    width = mpmath.fsub(high, low, exact=True)
    # Past the format's range (rounded to inf) an error is measured relative to its size.
    return (math.isinf(rounded) or width <= mpmath.ldexp(1, fmt.ulp_exponent(binade) - SPACING_BITS)) and \
        width <= mpmath.ldexp(1, binade - RELATIVE_BITS)


def settle_reduction(formula: Formula, items: Sequence[tuple[Any, ...]], refs: Sequence[RefValue], count: int,
                     reduction: Reduction, c: Arithmetic, max_prec: int = MAX_PREC) -> RefValue:
    """Mean or sum of the first ``count`` items, from their settled enclosures."""
    def recompute(prec: int) -> Totals:
        return totals(settle_items(formula, items[:count], c, prec, prec))

    head = refs[:count]
    return settle_totals(totals(head), count, max(r.precision for r in head), all(r.settled for r in head),
                         reduction, recompute, max_prec)


def evaluate(formula: Formula, items: Sequence[tuple[Any, ...]], reduction: Reduction, c: Arithmetic,
             start_prec: int = START_PREC, max_prec: int = MAX_PREC) -> RefValue | list[RefValue]:
    """Settled reference of ``formula`` over ``items`` (argument tuples of exact mpf /
    int values). Returns one RefValue per item for reduction 'none', else one."""
    if not items:
        raise ValueError("the reference needs at least one item")
    refs = settle_items(formula, items, c, start_prec, max_prec)
    if reduction == "none":
        return refs
    return settle_reduction(formula, items, refs, len(items), reduction, c, max_prec)
