"""Error of a result against the exact reference.

- ULP error in dtype D: |r - ref| / ulp_D(ref), ulp_D(ref) = 2**(max(e, emin) - p + 1)
  with e = floor(log2 |ref|) (capped at emax), so subnormals use the subnormal
  spacing. A correctly rounded result has ULP error <= 0.5; note that just below
  a power of two the spacing halves, so the float below 2**e is 0.5 ulp away.
- Relative error |r - ref| / |ref| (0 when both are 0, inf when only ref is 0).
- Bits of error in dtype D (Herbie's measure): log2(1 + the number of D's floats
  from the result, rounded into D, to the correctly rounded reference), from 0
  (correctly rounded) to D's width; unlike ulp error it stays bounded where the
  reference is zero.
- Non-finite classes are kept apart: where a class applies, no number is given.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np

from harness.model.dtypes import NUMPY_DTYPES
from reference.formats import BinaryFormat, get_format, mpf_ulp_exponent, round_mpf, round_pairs

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


# --- vectorised forms for sweeps ------------------------------------------------
# The reference comes as float64 pairs (hi, lo), hi + lo within 2**-106 (relative)
# of the exact value, or within 2**-1074 (absolute) where the remainder falls below
# float64's subnormals (lo then still carries its sign), plus its correctly rounded value in the dtype; results are
# float64 arrays holding the framework's values exactly. The errors therefore match
# the exact scalar definitions above to that bound (tests/test_metrics.py checks it).

_CLASS_CODES = (None, *NONFINITE_CLASSES)


def classify_many(values: np.ndarray, ref_hi: np.ndarray, ref_rounded: np.ndarray) -> np.ndarray:
    """Index into (None, *NONFINITE_CLASSES) per element; 0 means both finite."""
    codes = np.zeros(values.shape, dtype=np.int8)
    value_nan, ref_nan = np.isnan(values), np.isnan(ref_hi)
    value_inf, ref_inf = np.isinf(values), np.isinf(ref_hi)

    def mark(mask: np.ndarray, name: str) -> None:
        codes[mask & (codes == 0)] = _CLASS_CODES.index(name)

    mark(ref_nan & value_nan, EXPECTED_NAN)
    mark(ref_nan, MISSED_NAN)
    mark(value_nan, SPURIOUS_NAN)
    mark(ref_inf & value_inf & (np.sign(values) == np.sign(ref_hi)), EXPECTED_INF)
    mark(ref_inf & value_inf, WRONG_SIGN_INF)
    mark(ref_inf, MISSED_INF)
    mark(value_inf & (values == ref_rounded), EXPECTED_INF)
    mark(value_inf, SPURIOUS_INF)
    return codes


def class_names(codes: np.ndarray) -> list[str | None]:
    return [_CLASS_CODES[c] for c in codes]


def count_classes(codes: np.ndarray) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(_CLASS_CODES))
    return {name: int(counts[i]) for i, name in enumerate(_CLASS_CODES) if name is not None}


def _binades(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """floor(log2 |hi + lo|) of non-zero finite references."""
    mantissa, exponent = np.frexp(hi)
    binade = exponent - 1
    # hi rounded up onto a power of two when the exact value lies just below it.
    below = (np.abs(mantissa) == 0.5) & (lo != 0) & (np.sign(lo) != np.sign(hi))
    return binade - below


def ulp_errors(values: np.ndarray, hi: np.ndarray, lo: np.ndarray, fmt: BinaryFormat | str) -> np.ndarray:
    """|value - ref| / ulp_fmt(ref) for finite pairs (nan elsewhere)."""
    fmt = _fmt(fmt)
    with np.errstate(all="ignore"):
        k = fmt.ulp_exponents(np.where(hi == 0, fmt.emin, _binades(hi, lo)))
        diff = np.abs((values - hi) - lo)  # values - hi is exact when close (Sterbenz)
        errors = np.ldexp(diff, -k)
    return np.where(np.isfinite(values) & np.isfinite(hi), errors, np.nan)


def relative_errors(values: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        diff = np.abs((values - hi) - lo)
        rel = np.where(hi == 0, np.where(diff == 0, 0.0, np.inf), diff / np.abs(hi))
    return np.where(np.isfinite(values) & np.isfinite(hi), rel, np.nan)


def _ordinals(values: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(sign, magnitude) of each value's bit pattern in ``dtype`` (values are floats of
    ``dtype`` held in float64): consecutive floats have consecutive magnitudes."""
    kind = NUMPY_DTYPES[dtype]
    width = 8 * np.dtype(kind).itemsize
    raw = values.astype(kind).view(np.dtype(f"u{width // 8}")).astype(np.uint64)
    return (raw >> np.uint64(width - 1)).astype(bool), (raw & np.uint64((1 << (width - 1)) - 1)).astype(np.int64)


def bits_errors(values: np.ndarray, rounded: np.ndarray, dtype: str) -> np.ndarray:
    """log2(1 + floats of ``dtype`` between the result (rounded into ``dtype``) and the
    correctly rounded reference); an infinity counts as the float past the largest
    (a reference that overflows the dtype is 1 bit from its largest float). nan
    where either is nan."""
    finite = ~np.isnan(values) & ~np.isnan(rounded)
    with np.errstate(all="ignore"):
        zeros = np.zeros(values.shape)
        sign_a, a = _ordinals(round_pairs(np.where(finite, values, 0.0), zeros, dtype), dtype)
        sign_b, b = _ordinals(np.where(finite, rounded, 0.0), dtype)
        # On one side of zero the magnitudes' difference (exact in int64); across it, their sum.
        apart = np.where(sign_a == sign_b, np.abs(a - b).astype(np.float64), a.astype(np.float64) + b)
    return np.where(finite, np.log2(1.0 + apart), np.nan)
