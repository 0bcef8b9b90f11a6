"""Exact building blocks of the loss formulas (reference.formulas) and their
derivatives: rational steps on mpf without rounding, sums that are exact, and
the ``@exact`` marks of formulas that never round."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import mpmath
from mpmath.libmp import libmpf

mpf = mpmath.mpf
ZERO = mpf(0)
ONE = mpf(1)
INF = mpmath.inf
NAN = mpmath.nan


# --- exact building blocks -------------------------------------------------

def exact(formula: Callable[..., mpf]) -> Callable[..., mpf]:
    """Mark a formula whose items are computed with no rounding at all (an mpf or a
    Fraction): a fact of the loss, checked against Fraction arithmetic by the tests."""
    formula.exact = True  # type: ignore[attr-defined]
    return formula


def is_exact(formula: Callable[..., mpf]) -> bool:
    """Whether ``formula`` (possibly a functools.partial binding its parameters) is exact."""
    base = getattr(formula, "func", formula)
    return bool(getattr(base, "exact", False))


_make = mpmath.mp.make_mpf


def sub(a: mpf, b: mpf) -> mpf:
    """a - b without rounding (libmpf directly: these are the formulas' hot path)."""
    return _make(libmpf.mpf_sub(a._mpf_, b._mpf_, 0))


def add(a: mpf, b: mpf) -> mpf:
    return _make(libmpf.mpf_add(a._mpf_, b._mpf_, 0))


def mul(a: mpf, b: mpf) -> mpf:
    return _make(libmpf.mpf_mul(a._mpf_, b._mpf_, 0))


def neg(a: mpf) -> mpf:
    """-a without rounding (unary minus on an mpf rounds to the working precision)."""
    return _make(libmpf.mpf_neg(a._mpf_))


def absolute(a: mpf) -> mpf:
    """|a| without rounding (abs() on an mpf rounds to the working precision)."""
    return _make(libmpf.mpf_abs(a._mpf_))


def half(a: mpf) -> mpf:
    return mpmath.ldexp(a, -1)


def ratio(a: mpf, b: mpf) -> mpf | Fraction:
    """a / b exactly, for finite a and non-zero finite b: an mpf when the quotient is
    dyadic, else a Fraction (which can never lie on a rounding boundary)."""
    return rational(to_fraction(a) / to_fraction(b))


def rational(q: Fraction) -> mpf | Fraction:
    """An exact rational as the formulas hold it: an mpf when dyadic, else itself."""
    if q.denominator & (q.denominator - 1) == 0:  # a power of two
        return mpmath.mp.make_mpf(libmpf.from_man_exp(q.numerator, 1 - q.denominator.bit_length()))
    return q


def to_fraction(x: mpf | Fraction) -> Fraction:
    """A finite exact value (mpf or Fraction) as the rational it is."""
    if isinstance(x, Fraction):
        return x
    sign, man, exponent, _ = x._mpf_
    value = Fraction(int(man) << exponent) if exponent >= 0 else Fraction(int(man), 1 << -exponent)
    return -value if sign else value


def exact_total(terms: Sequence[mpf]) -> mpf:
    """Sum of finite ``terms`` with no rounding at all (dyadic terms sum exactly)."""
    return mpmath.mp.make_mpf(libmpf.mpf_sum([t._mpf_ for t in terms], 0))


# Rounding boundaries of every format lie on multiples of 2**-1075; a decimal tie
# of 30 digits at 1e-670 and above is further than 2**-2400 from a dyadic with no
# bit below 2**-1075 (the inputs' exact combinations have none lower). A term
# this far below the rest's last bit moves no rounding and no printed digit but
# by its sign.
NEGLIGIBLE_BITS = 2400


def guarded_total(raws: Sequence[tuple]) -> tuple:
    """The sum of exact raw mpf values, exact wherever that fits in memory.

    Terms separated from the larger ones by a gap of more exponents than any term
    has bits (exp(-1e38) beside 1) cannot be summed exactly: the terms fall into
    clusters at such gaps, each summed exactly, and from the smallest up a
    cluster's total counts in the next one's only by its sign, as +-2**(m - 1)
    with 2**m below NEGLIGIBLE_BITS under the larger total's last bit (and under
    2**-1075): every rounding and every decimal digit of the sum is the same."""
    terms = [r for r in raws if r[1] or r[2]]  # drop zeros; keep inf and nan
    if not all(r[1] for r in terms):
        return libmpf.mpf_sum(terms, 0)  # a special value decides
    if len(terms) < 2:
        return terms[0] if terms else libmpf.fzero
    gap = max(r[3] for r in terms) + NEGLIGIBLE_BITS + 64 + len(terms).bit_length()
    tops = [r[2] + r[3] for r in terms]
    if max(tops) - min(tops) <= gap:  # no gap can separate them: the exact sum fits
        return libmpf.mpf_sum(terms, 0)
    ordered = sorted(terms, key=lambda r: r[2] + r[3], reverse=True)
    clusters = [[ordered[0]]]
    for before, term in zip(ordered, ordered[1:]):
        if before[2] + before[3] - (term[2] + term[3]) > gap:
            clusters.append([term])
        else:
            clusters[-1].append(term)
    total = libmpf.mpf_sum(clusters[-1], 0)
    for cluster in reversed(clusters[:-1]):  # from the smallest cluster up
        large = libmpf.mpf_sum(cluster, 0)
        if large[1] and total[1]:
            last_bit = min(large[2], -1075) - NEGLIGIBLE_BITS
            total = libmpf.mpf_add(large, (total[0], 1, last_bit - 1, 1), 0)
        elif large[1]:
            total = large
    return total


def extended_total(terms: Sequence[mpf]) -> mpf:
    """Exact sum in the extended reals: nan with a nan or with both infinities."""
    if any(is_nan(t) for t in terms) or (INF in terms and -INF in terms):
        return NAN
    if INF in terms or -INF in terms:
        return INF if INF in terms else -INF
    return exact_total(terms)


def is_nan(x: mpf) -> bool:
    return x._mpf_ == libmpf.fnan


def max_or_zero(a: mpf) -> mpf:
    """max(0, a), nan propagating."""
    if is_nan(a):
        return a
    return a if a > 0 else ZERO


def all_finite(values: Sequence[mpf]) -> bool:
    return all(is_finite(v) for v in values)


def is_finite(x: mpf) -> bool:
    raw = x._mpf_
    return bool(raw[1]) or raw == libmpf.fzero
