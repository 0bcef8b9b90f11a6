"""ULP error, relative error and non-finite classes, checked against the
definitions: identical values, neighbouring floats, sign crossings, subnormals
and the spacing of each format."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from harness import metrics
from harness.adapters.numpy_adapter import DTYPES
from reference.formats import FORMATS

from conftest import wide_values


def _mpf(x: float) -> mpmath.mpf:
    with mpmath.workprec(64):
        return mpmath.mpf(x)


def _next(value: float, dtype: str, direction: float) -> float:
    t = DTYPES[dtype]
    return float(np.nextafter(t(value), t(direction)))


def test_identical_values_have_zero_error(dtype: str) -> None:
    for v in wide_values(np.random.default_rng(1), dtype, 300):
        assert metrics.ulp_error(float(v), _mpf(float(v)), dtype) == 0.0
        assert metrics.relative_error(float(v), _mpf(float(v))) == 0.0
        assert metrics.classify(float(v), _mpf(float(v)), dtype) is None


def test_next_float_up_is_one_ulp(dtype: str) -> None:
    for v in wide_values(np.random.default_rng(2), dtype, 300):
        v = float(v)
        away = _next(v, dtype, math.copysign(math.inf, v))
        if math.isinf(away):
            continue
        assert metrics.ulp_error(away, _mpf(v), dtype) == 1.0


def test_next_float_below_a_power_of_two_is_half_an_ulp(dtype: str) -> None:
    # The spacing halves below 2**e and the ulp is taken at the reference.
    below = _next(1.0, dtype, 0.0)
    assert metrics.ulp_error(below, _mpf(1.0), dtype) == 0.5
    assert metrics.ulp_error(1.0, _mpf(below), dtype) == 1.0


def test_sign_crossing_counts_both_sides(dtype: str) -> None:
    tiny = float(FORMATS[dtype].smallest_subnormal)
    assert metrics.ulp_error(-tiny, _mpf(tiny), dtype) == 2.0
    assert metrics.ulp_error(tiny, _mpf(0.0), dtype) == 1.0
    assert metrics.ulp_error(-3 * tiny, _mpf(2 * tiny), dtype) == 5.0


def test_subnormal_spacing_is_constant(dtype: str) -> None:
    fmt = FORMATS[dtype]
    tiny = float(fmt.smallest_subnormal)
    smallest_normal = 2.0**fmt.emin
    assert metrics.ulp_error(2 * tiny, _mpf(3 * tiny), dtype) == 1.0
    assert metrics.ulp_error(smallest_normal - tiny, _mpf(smallest_normal), dtype) == 1.0
    assert metrics.ulp_error(smallest_normal + tiny, _mpf(smallest_normal), dtype) == 1.0


@pytest.mark.parametrize("dtype, spacing_at_one, top_spacing", [
    ("bfloat16", 2.0**-7, 2.0**120),
    ("float16", 2.0**-10, 32.0),
    ("float32", 2.0**-23, 2.0**104),
    ("float64", 2.0**-52, 2.0**971),
])
def test_format_spacing(dtype: str, spacing_at_one: float, top_spacing: float) -> None:
    assert metrics.ulp_error(1.0 + spacing_at_one, _mpf(1.0), dtype) == 1.0
    top = float(FORMATS[dtype].max_finite)
    assert metrics.ulp_error(top - top_spacing, _mpf(top), dtype) == 1.0
    assert metrics.ulp_error(1.5, _mpf(1.0), dtype) == 0.5 / spacing_at_one


def test_error_between_floats_is_fractional() -> None:
    # A float32 result measured in float16 ulps: 1 + 2**-12 is a quarter of a float16 ulp from 1.
    assert metrics.ulp_error(1.0 + 2.0**-12, _mpf(1.0), "float16") == 0.25


def test_relative_error() -> None:
    assert metrics.relative_error(1.5, _mpf(1.0)) == 0.5
    assert metrics.relative_error(0.0, _mpf(0.0)) == 0.0
    assert metrics.relative_error(1e-300, _mpf(0.0)) == math.inf
    assert metrics.relative_error(-2.0, _mpf(2.0)) == 2.0


@pytest.mark.parametrize("result, reference, expected", [
    (1.0, 2.0, None),
    (math.inf, math.inf, metrics.EXPECTED_INF),
    (-math.inf, math.inf, metrics.WRONG_SIGN_INF),
    (math.nan, math.nan, metrics.EXPECTED_NAN),
    (math.inf, 2.0, metrics.SPURIOUS_INF),
    (math.nan, 2.0, metrics.SPURIOUS_NAN),
    (math.nan, math.inf, metrics.SPURIOUS_NAN),
    (100.0, math.inf, metrics.MISSED_INF),
    (1.0, math.nan, metrics.MISSED_NAN),
    (math.inf, math.nan, metrics.MISSED_NAN),
])
def test_nonfinite_classes(result: float, reference: float, expected: str | None) -> None:
    assert metrics.classify(result, _mpf(reference), "float32") == expected


def test_overflow_that_rounds_to_inf_is_expected() -> None:
    just_past = _mpf(70000.0)  # beyond float16's max 65504 + half its top spacing
    assert metrics.classify(math.inf, just_past, "float16") == metrics.EXPECTED_INF
    assert metrics.classify(math.inf, just_past, "float32") == metrics.SPURIOUS_INF
