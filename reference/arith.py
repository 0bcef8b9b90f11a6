"""The arithmetics the loss formulas are written against: rigorous enclosures.

Every formula in reference.formulas and reference.derivatives is written once,
generic over an arithmetic ``c`` (as functional_algorithms writes one algorithm
for many targets): its rational steps are done exactly on mpmath numbers
(reference.mpexact), its transcendental steps with ``c``, whose values are
enclosures of the exact result. Two arithmetics implement the same small
interface:

- ``Balls``: Arb midpoint-radius balls through python-flint (fast);
- ``Intervals``: mpmath's interval arithmetic (``mpmath.iv``), the reference of
  record, slower.

A formula returns an exact mpf (no rounding happened), an exact ``Fraction`` (a
rational value that is not dyadic), an arithmetic value, a ``Shifted`` (an exact
head plus an enclosed tail), or an ``Enclosure`` of exact endpoints; ``bounds``
turns any of them into the exact dyadic endpoints the settlement
(reference.certify) decides on.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import mpmath

try:
    import flint
except ImportError:  # a machine without python-flint (the lent GPU one) has the mpmath engine only
    flint = None
from mpmath.libmp import libmpf

from reference.mpexact import guarded_total, ratio

mpf = mpmath.mpf
Raw = tuple  # an mpmath raw number (sign, man, exp, bc)


@dataclass(frozen=True)
class Enclosure:
    """The exact value lies in [lower, upper] (exact mpf endpoints)."""

    lower: mpf
    upper: mpf


@dataclass(frozen=True)
class Shifted:
    """head + tail: an exact head (an mpf, or a Fraction that is not dyadic) and an
    enclosed tail, kept apart so that negating or scaling stays exact and a tail
    far below the head still decides the head's tie (see ``bounds``)."""

    head: mpf | Fraction
    tail: Any

    def __neg__(self) -> Shifted:
        head = mpmath.fneg(self.head, exact=True) if isinstance(self.head, mpf) else -self.head
        return Shifted(head, -self.tail)

    def scaled(self, count: int) -> Shifted:
        """(head + tail) / count: the head divided exactly."""
        head = ratio(self.head, mpf(count)) if isinstance(self.head, mpf) else self.head / count
        return Shifted(head, self.tail / count)


class Arithmetic:
    """The interface a formula uses for its inexact steps (values V)."""

    name: ClassVar[str]

    def precision(self, prec: int) -> contextlib.AbstractContextManager[None]: ...
    def num(self, x: mpf | int) -> Any: ...
    def exp(self, v: Any) -> Any: ...
    def expm1(self, v: Any) -> Any: ...
    def log(self, v: Any) -> Any: ...
    def log1p(self, v: Any) -> Any: ...
    def sqrt(self, v: Any) -> Any: ...
    def ln2(self) -> Any: ...
    def power(self, v: Any, exponent: Any) -> Any: ...
    def between(self, lower: mpf, upper: mpf) -> Any: ...
    def endpoints(self, v: Any) -> tuple[Raw, Raw]: ...
    def is_point(self, v: Any) -> bool: ...

    def div(self, a: mpf, b: mpf) -> Any:
        """a / b of exact finite numbers (b non-zero), as a value to compute with."""
        return self.num(ratio(a, b))

    def exp_of(self, t: mpf) -> Any:
        """exp of an exact t. Far out (|t| > 2**40, where Arb's own exp gives up on
        accuracy) the argument is reduced here: exp(t) = 2**n exp(t - n log 2),
        with t / log 2 computed at enough extra precision to hold its integer part."""
        if not t < -HUGE_EXP_ARGUMENT and not t > HUGE_EXP_ARGUMENT:
            return self.exp(self.num(t))
        prec = mpmath.mp.prec
        sign, man, exponent, bitcount = t._mpf_
        with self.precision(prec + exponent + bitcount + 32):
            scaled = self.num(t) / self.ln2()
            n = int(mpmath.floor(mpmath.mp.make_mpf(self.endpoints(scaled)[0])))
            reduced = self.exp(self.num(t) - n * self.ln2())
        return reduced * self.num(mpmath.ldexp(1, n))


# Beyond this |t| the arithmetic's exp is not trusted to stay tight.
HUGE_EXP_ARGUMENT = 2**40


@contextlib.contextmanager
def _working_precision(context: Any, prec: int) -> Iterator[None]:
    """``context.prec`` set to ``prec`` for the block (python-flint's and mpmath.iv's
    contexts both keep their precision there)."""
    saved = context.prec
    context.prec = prec
    try:
        yield
    finally:
        context.prec = saved


class Balls(Arithmetic):
    """Arb balls through python-flint; the radius bounds every rounding made."""

    name = "flint"

    def precision(self, prec: int) -> contextlib.AbstractContextManager[None]:
        return _working_precision(flint.ctx, prec)

    def num(self, x: mpf | int | Fraction) -> flint.arb:
        if isinstance(x, int):
            return flint.arb(x)
        if isinstance(x, Fraction):
            return flint.arb(flint.fmpq(x.numerator, x.denominator))
        sign, man, exponent, _ = x._mpf_
        if not man:
            if exponent:  # inf or nan: formulas take limits before they get here
                raise ValueError("a ball holds finite values only")
            return flint.arb(0)
        return flint.arb((-int(man) if sign else int(man), exponent))

    def exp(self, v: flint.arb) -> flint.arb:
        return v.exp()

    def expm1(self, v: flint.arb) -> flint.arb:
        return v.expm1()

    def log(self, v: flint.arb) -> flint.arb:
        return v.log()

    def log1p(self, v: flint.arb) -> flint.arb:
        return v.log1p()

    def sqrt(self, v: flint.arb) -> flint.arb:
        return v.sqrt()

    def ln2(self) -> flint.arb:
        return flint.arb.const_log2()

    def power(self, v: flint.arb, exponent: flint.arb) -> flint.arb:
        return v ** exponent

    def between(self, lower: mpf, upper: mpf) -> flint.arb:
        return self.num(lower).union(self.num(upper))

    def is_point(self, v: flint.arb) -> bool:
        return v.is_exact()

    def endpoints(self, v: flint.arb) -> tuple[Raw, Raw]:
        """mid -+ rad, exactly (Arb's own lower() and upper() round to the context's
        precision)."""
        if not v.is_finite():
            return libmpf.fninf, libmpf.finf
        man, exponent = v.mid().man_exp()
        mid = libmpf.from_man_exp(int(man), int(exponent))
        if v.is_exact():
            return mid, mid
        man, exponent = v.rad().man_exp()
        rad = libmpf.from_man_exp(int(man), int(exponent))
        return libmpf.mpf_sub(mid, rad, 0), libmpf.mpf_add(mid, rad, 0)


class Intervals(Arithmetic):
    """mpmath's interval arithmetic: endpoints rounded outward."""

    name = "mpmath"
    iv = mpmath.iv

    def precision(self, prec: int) -> contextlib.AbstractContextManager[None]:
        return _working_precision(self.iv, prec)

    def num(self, x: mpf | int | Fraction) -> Any:
        if isinstance(x, Fraction):
            return self.iv.mpf(x.numerator) / self.iv.mpf(x.denominator)
        if not isinstance(x, int) and not mpmath.isfinite(x):
            raise ValueError("an interval of this arithmetic holds finite values only")
        return self.iv.mpf(x)

    def exp(self, v: Any) -> Any:
        return self.iv.exp(v)

    def expm1(self, v: Any) -> Any:
        return self.iv.expm1(v)

    def log(self, v: Any) -> Any:
        return self.iv.log(v)

    def log1p(self, v: Any) -> Any:
        return self.iv.log1p(v)

    def sqrt(self, v: Any) -> Any:
        return self.iv.sqrt(v)

    def ln2(self) -> Any:
        return self.iv.ln2

    def power(self, v: Any, exponent: Any) -> Any:
        return self.iv.power(v, exponent)

    def between(self, lower: mpf, upper: mpf) -> Any:
        return self.iv.mpf([lower, upper])

    def endpoints(self, v: Any) -> tuple[Raw, Raw]:
        return v._mpi_

    def is_point(self, v: Any) -> bool:
        lower, upper = v._mpi_
        return lower == upper


ENGINES: dict[str, Arithmetic] = {"flint": Balls(), "mpmath": Intervals()}
DEFAULT_ENGINE = "flint"


def engine(name: str) -> Arithmetic:
    try:
        found = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown reference engine {name!r}; expected one of {', '.join(ENGINES)}") from None
    if isinstance(found, Balls) and flint is None:
        raise ValueError("reference engine flint needs python-flint, which is not installed here; "
                         "use --reference-engine mpmath")
    return found


def bounds(c: Arithmetic, result: Any) -> tuple[Raw, Raw]:
    """Exact endpoints (raw mpf) of what a formula returned (types tested exactly:
    this is the settlement's hot path)."""
    kind = type(result)
    if kind is mpf:
        return result._mpf_, result._mpf_
    if kind is Fraction:
        return rational_bounds(result)
    if kind is Enclosure:
        return result.lower._mpf_, result.upper._mpf_
    if kind is Shifted:
        lower, upper = c.endpoints(result.tail)
        head = result.head
        if isinstance(head, Fraction):  # not dyadic: never on a boundary, so its rounded ends do
            head_lower, head_upper = rational_bounds(head)
        else:
            head_lower = head_upper = head._mpf_
        return guarded_total([head_lower, lower]), guarded_total([head_upper, upper])
    return c.endpoints(result)


def rational_bounds(q: Fraction) -> tuple[Raw, Raw]:
    """q rounded down and up at the working precision: a tight enclosure of it."""
    prec = mpmath.mp.prec
    return (libmpf.from_rational(q.numerator, q.denominator, prec, "f"),
            libmpf.from_rational(q.numerator, q.denominator, prec, "c"))


def shift(c: Arithmetic, head: mpf, tail: Any) -> Any:
    """head + tail for an exact head and an enclosed tail, added with no rounding
    when its ends are taken: a tail far below the head keeps its sign, so it
    decides a head lying on a tie. (A zero head leaves the tail alone.)"""
    return Shifted(head, tail) if head else tail


def quotient(a: mpf, b: mpf) -> mpf | Enclosure:
    """a / b of exact finite numbers (b non-zero) whose rounding alone matters (it is
    not summed further): exact when dyadic, else rounded outward at the working
    precision (a quotient that is not dyadic lies on no rounding boundary, so rising
    precision settles it)."""
    sign_a, man_a, exp_a, _ = a._mpf_
    sign_b, man_b, exp_b, _ = b._mpf_
    if not man_a:
        return a
    if man_a % man_b == 0:  # normalized mantissas are odd: dyadic exactly when man_b divides man_a
        return mpmath.mp.make_mpf(libmpf.from_man_exp((-1) ** (sign_a ^ sign_b) * (man_a // man_b), exp_a - exp_b))
    prec = mpmath.mp.prec
    return Enclosure(mpmath.mp.make_mpf(libmpf.mpf_div(a._mpf_, b._mpf_, prec, "f")),
                     mpmath.mp.make_mpf(libmpf.mpf_div(a._mpf_, b._mpf_, prec, "c")))


def as_value(c: Arithmetic, v: Any) -> Any:
    """Any formula result as an arithmetic value (to compute further with)."""
    if isinstance(v, (mpf, Fraction)):
        return c.num(v)
    if isinstance(v, Enclosure):
        return c.between(v.lower, v.upper)
    if isinstance(v, Shifted):
        return c.num(v.head) + v.tail
    return v
