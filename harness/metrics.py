"""Error of a result against the exact reference.

- ULP error in dtype D: |r - ref| / ulp_D(ref), ulp_D(ref) = 2**(max(e, emin) - p + 1)
  with e = floor(log2 |ref|) (capped at emax), so subnormals use the subnormal
  spacing. A correctly rounded result has ULP error <= 0.5; note that just below
  a power of two the spacing halves, so the float below 2**e is 0.5 ulp away.
- Relative error |r - ref| / |ref| (0 when both are 0, inf when only ref is 0).
- Non-finite classes are kept apart: where a class applies, no number is given.
"""
from __future__ import annotations

import math

import mpmath

from reference.formats import BinaryFormat, get_format, mpf_ulp_exponent, round_mpf

EXPECTED_INF = "expected_inf"
EXPECTED_NAN = "expected_nan"
SPURIOUS_INF = "spurious_inf"
SPURIOUS_NAN = "spurious_nan"
MISSED_INF = "missed_inf"
MISSED_NAN = "missed_nan"
WRONG_SIGN_INF = "wrong_sign_inf"
NONFINITE_CLASSES = (EXPECTED_INF, EXPECTED_NAN, SPURIOUS_INF, SPURIOUS_NAN, MISSED_INF, MISSED_NAN, WRONG_SIGN_INF)


def _fmt(fmt: BinaryFormat | str) -> BinaryFormat:
    return get_format(fmt) if isinstance(fmt, str) else fmt


def classify(result: float, reference: mpmath.mpf, fmt: BinaryFormat | str) -> str | None:
    """Non-finite class of a result, or None when result and reference are both finite.

    A finite reference that overflows ``fmt`` when rounded makes an infinite
    result of the same sign correct (``expected_inf``).
    """
    if mpmath.isnan(reference):
        return EXPECTED_NAN if math.isnan(result) else MISSED_NAN
    if math.isnan(result):
        return SPURIOUS_NAN
    if mpmath.isinf(reference):
        if math.isinf(result):
            return EXPECTED_INF if (result > 0) == (reference > 0) else WRONG_SIGN_INF
        return MISSED_INF
    if math.isinf(result):
        return EXPECTED_INF if round_mpf(reference, _fmt(fmt)) == result else SPURIOUS_INF
    return None


def _abs_diff(result: float, reference: mpmath.mpf) -> mpmath.mpf:
    return abs(mpmath.fsub(mpmath.mpf(result), reference, exact=True))


def ulp_error(result: float, reference: mpmath.mpf, fmt: BinaryFormat | str) -> float:
    """|result - reference| in units of fmt's spacing at the reference (both finite)."""
    k = mpf_ulp_exponent(reference, _fmt(fmt))
    return float(mpmath.ldexp(_abs_diff(result, reference), -k))


def relative_error(result: float, reference: mpmath.mpf) -> float:
    """|result - reference| / |reference| (both finite)."""
    diff = _abs_diff(result, reference)
    if not reference:
        return 0.0 if not diff else math.inf
    with mpmath.workprec(64):
        return float(diff / abs(reference))
