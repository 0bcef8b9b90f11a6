"""Correct rounding of exact values into each binary format.

Expected values come from IEEE-754 conversions that NumPy implements as single
correctly rounded operations (float64 -> float32 / float16, float32 -> bfloat16),
and from the formats' defining constants.
"""
from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest

from reference.formats import FORMATS, get_format, round_mpf, round_rational

from conftest import wide_values


def _mpf(x: float) -> mpmath.mpf:
    with mpmath.workprec(64):
        return mpmath.mpf(x)


@pytest.mark.parametrize("target, numpy_type, source", [
    ("float32", np.float32, "float64"),
    ("float16", np.float16, "float64"),
    ("bfloat16", ml_dtypes.bfloat16, "float32"),  # ml_dtypes double-rounds from float64
])
def test_matches_ieee_conversion(target: str, numpy_type: type, source: str) -> None:
    rng = np.random.default_rng(7)
    values = wide_values(rng, source, 4000)
    # Include values around the target's overflow and underflow thresholds.
    fmt = FORMATS[target]
    edges = [float(fmt.max_finite) * f for f in (0.999, 1.0, 1.001, 1.5, 3.0)]
    edges += [float(fmt.smallest_subnormal) * f for f in (0.25, 0.5, 0.75, 1.0, 1.5, 2.5)]
    source_type = np.float64 if source == "float64" else np.float32
    with np.errstate(over="ignore"):  # edges past float32's range become inf, also a case
        values = np.concatenate([values, np.asarray(edges, dtype=source_type).astype(np.float64)])
        expected = np.asarray(values, dtype=source_type).astype(numpy_type).astype(np.float64)
    got = np.array([round_mpf(_mpf(v), target) for v in values])
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_ties_round_to_even(dtype: str) -> None:
    fmt = get_format(dtype)
    ulp = Fraction(1, 2 ** (fmt.precision - 1))  # spacing in [1, 2)
    assert round_rational(1 + ulp / 2, fmt) == 1.0                      # tie, 1 is even
    assert round_rational(1 + 3 * ulp / 2, fmt) == float(1 + 2 * ulp)   # tie, 1+ulp is odd
    assert round_rational(1 + ulp / 2 + Fraction(1, 2**200), fmt) == float(1 + ulp)


def test_overflow_threshold(dtype: str) -> None:
    fmt = get_format(dtype)
    top_ulp = Fraction(2) ** (fmt.emax - fmt.precision + 1)
    halfway = fmt.max_finite + top_ulp / 2
    assert round_rational(halfway - Fraction(1, 2**2000), fmt) == float(fmt.max_finite)
    assert round_rational(halfway, fmt) == math.inf
    assert round_rational(-halfway, fmt) == -math.inf


def test_float16_known_values() -> None:
    fp16 = FORMATS["float16"]
    assert round_rational(Fraction(65519), fp16) == 65504.0
    assert round_rational(Fraction(65520), fp16) == math.inf
    assert round_rational(Fraction(1, 2**25), fp16) == 0.0           # half the smallest subnormal: tie to 0
    assert round_rational(Fraction(3, 2**26), fp16) == 2.0**-24      # above the tie


def test_decimal_input_rounds_once() -> None:
    # 1.00390625000001 is just above the bfloat16 midpoint 1 + 2**-8; rounding through
    # float32 first lands exactly on the midpoint and then goes down to 1.0.
    assert round_rational(Fraction("1.00390625000001"), FORMATS["bfloat16"]) == 1.0078125


def test_underflow_keeps_the_sign_and_nonfinite_passes(dtype: str) -> None:
    assert round_mpf(mpmath.inf, dtype) == math.inf
    assert round_mpf(-mpmath.inf, dtype) == -math.inf
    assert math.isnan(round_mpf(mpmath.nan, dtype))
    with mpmath.workprec(64):
        tiny = -mpmath.ldexp(1, -1100)  # below half of every format's smallest subnormal
    rounded = round_mpf(tiny, dtype)
    assert rounded == 0.0 and math.copysign(1.0, rounded) == -1.0
