"""Binary floating-point formats and correct rounding of exact values into them.

Rounding is done here from exact rationals rather than by ``float()`` plus a
NumPy cast, because that path rounds twice (ml_dtypes even rounds
float64 -> bfloat16 through float32) and can land on the wrong neighbour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np
from mpmath.libmp import to_float


@dataclass(frozen=True)
class BinaryFormat:
    """An IEEE-754-style binary format: ``precision`` significand bits
    (hidden bit included) and the exponent range of its normal numbers."""

    name: str
    precision: int
    emin: int
    emax: int

    @property
    def max_finite(self) -> Fraction:
        return Fraction(2**self.precision - 1) * Fraction(2) ** (self.emax - self.precision + 1)

    @property
    def smallest_subnormal(self) -> Fraction:
        return Fraction(2) ** (self.emin - self.precision + 1)

    def ulp_exponent(self, binade: int) -> int:
        """Exponent k with 2**k the spacing of this format in binade ``binade``
        (values in [2**binade, 2**(binade+1))), clamped to the subnormal and top range."""
        return min(max(binade, self.emin), self.emax) - self.precision + 1

    def ulp_exponents(self, binades: np.ndarray) -> np.ndarray:
        """ulp_exponent of each binade, vectorised (the one formula, for arrays)."""
        return np.clip(binades, self.emin, self.emax) - self.precision + 1


FORMATS: dict[str, BinaryFormat] = {
    "float64": BinaryFormat("float64", 53, -1022, 1023),
    "float32": BinaryFormat("float32", 24, -126, 127),
    "float16": BinaryFormat("float16", 11, -14, 15),
    "bfloat16": BinaryFormat("bfloat16", 8, -126, 127),
}


def get_format(name: str) -> BinaryFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown floating-point format {name!r}; expected one of {', '.join(FORMATS)}") from None


def _binade(q: Fraction) -> int:
    """floor(log2(q)) for q > 0, computed exactly."""
    e = q.numerator.bit_length() - q.denominator.bit_length()
    # 2**e <= q < 2**(e+1) may be off by one; fix it exactly.
    if e >= 0:
        if q.numerator < q.denominator << e:
            e -= 1
    elif q.numerator << -e < q.denominator:
        e -= 1
    return e


def round_rational(q: Fraction, fmt: BinaryFormat) -> float:
    """Round an exact rational to nearest-even in ``fmt``; returns a Python float
    holding exactly the rounded value (every format here is a subset of float64)."""
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    a = abs(q)
    k = fmt.ulp_exponent(_binade(a))
    # a / 2**k, split into integer part and remainder, rounded half to even.
    scaled = a / Fraction(2) ** k if k >= 0 else a * (1 << -k)
    n, rem = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * rem
    if twice > scaled.denominator or (twice == scaled.denominator and n & 1):
        n += 1
    if n * Fraction(2) ** k > fmt.max_finite:
        return sign * math.inf
    return sign * math.ldexp(n, k)


def mpf_binade(x: mpmath.mpf) -> int:
    """floor(log2(|x|)) of a finite non-zero mpf, read off its exact representation."""
    _, man, exp, bitcount = x._mpf_
    return exp + bitcount - 1


def is_midpoint(value: float, fmt: BinaryFormat) -> bool:
    """Whether a float64 lies exactly halfway between two neighbours of ``fmt``."""
    if fmt.precision >= 53 or not math.isfinite(value) or value == 0:
        return False
    k = fmt.ulp_exponent(math.frexp(value)[1] - 1)
    twice = math.ldexp(value, 1 - k)  # value / (ulp / 2), exact
    return twice == int(twice) and int(twice) % 2 == 1


def mpf_ulp_exponent(x: mpmath.mpf, fmt: BinaryFormat) -> int:
    """Exponent k such that 2**k is the spacing of ``fmt`` at the finite value ``x``
    (the smallest subnormal spacing at zero)."""
    if not x:
        return fmt.emin - fmt.precision + 1
    return fmt.ulp_exponent(mpf_binade(x))


def round_mpf(x: mpmath.mpf, fmt: BinaryFormat | str) -> float:
    """Correctly rounded (nearest-even) value of ``x`` in ``fmt``, as an exact Python
    float; non-finite values pass through. Integer-only, so it is exact and fast."""
    if isinstance(fmt, str):
        fmt = get_format(fmt)
    sign, man, exp, _ = x._mpf_
    if not man:
        if mpmath.isnan(x):
            return math.nan
        if mpmath.isinf(x):
            return -math.inf if sign else math.inf
        return 0.0  # mpmath has no signed zero
    binade = mpf_binade(x)
    if fmt.precision == 53 and -1022 <= binade <= 1022:
        return to_float(x._mpf_, rnd="n")  # normal range: round to 53 bits (ties even), exact ldexp
    if binade > fmt.emax:
        return -math.inf if sign else math.inf
    if binade < fmt.emin - fmt.precision:  # below half the smallest subnormal
        return -0.0 if sign else 0.0
    k = mpf_ulp_exponent(x, fmt)
    if exp >= k:
        n = man << (exp - k)
    else:
        shift = k - exp
        n = man >> shift
        rem = man & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and n & 1):
            n += 1
    top_spacing = fmt.emax - fmt.precision + 1
    if k == top_spacing and n >= 1 << fmt.precision:
        return -math.inf if sign else math.inf
    value = math.ldexp(n, k)
    return -value if sign else value


def round_pairs(hi: np.ndarray, lo: np.ndarray, dtype: str) -> np.ndarray:
    """Correct rounding of the values hi + lo into ``dtype``, vectorised.

    hi is rounded once into the format (scale by the format's spacing, rint with
    ties to even, scale back); where hi lies exactly on a rounding boundary of the
    format, lo decides the direction, as the exact value would.
    """
    fmt = get_format(dtype)
    if fmt.precision == 53:
        return hi.copy()
    with np.errstate(all="ignore"):
        finite = np.isfinite(hi) & (hi != 0)
        k = fmt.ulp_exponents(np.frexp(np.where(finite, hi, 1.0))[1] - 1)
        scaled = np.ldexp(hi, -k)
        steps = np.rint(scaled)
        tie = np.abs(scaled - np.trunc(scaled)) == 0.5
        steps = np.where(tie & (lo > 0), np.ceil(scaled), np.where(tie & (lo < 0), np.floor(scaled), steps))
        rounded = np.ldexp(steps, k)
        rounded = np.where(np.abs(rounded) > float(fmt.max_finite), np.copysign(np.inf, hi), rounded)
    return np.where(finite, rounded, hi)
