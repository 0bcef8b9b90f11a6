"""ULP error, relative error and non-finite classes, checked against the
definitions: identical values, neighbouring floats, sign crossings, subnormals
and the spacing of each format."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.measure import metrics
from harness.model.dtypes import NUMPY_DTYPES as DTYPES
from reference.formats import FORMATS, mpf_ulp_exponent, round_mpf

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


def _references(dtype: str, rng: np.random.Generator) -> list[mpmath.mpf]:
    """Exact references that stress the float64 (hi, lo) form: values with bits far
    below float64, just below powers of two, on and beside rounding ties of the
    dtype, subnormal, zero and non-finite."""
    fmt = FORMATS[dtype]
    refs = []
    with mpmath.workprec(300):
        for v in wide_values(rng, dtype, 150):
            refs.append(mpmath.mpf(float(v)) * (1 + mpmath.mpf(rng.uniform(-1, 1)) * mpmath.mpf(2) ** -70))
        for e in rng.integers(fmt.emin - fmt.precision, fmt.emax, 40):
            power = mpmath.ldexp(1, int(e))
            refs += [power - mpmath.ldexp(power, -90), power + mpmath.ldexp(power, -90)]
            tie = power * (1 + mpmath.ldexp(1, -fmt.precision))  # halfway between two dtype neighbours
            refs += [tie, tie + mpmath.ldexp(power, -100), tie - mpmath.ldexp(power, -100)]
        refs += [mpmath.mpf(0), mpmath.inf, -mpmath.inf, mpmath.nan]
    return refs


def test_vectorised_metrics_equal_the_scalar_definitions(dtype: str) -> None:
    from reference.formats import round_pairs
    from reference.certify import split

    rng = np.random.default_rng(9)
    refs = _references(dtype, rng)
    pairs = [split(r._mpf_) for r in refs]
    hi, lo = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    rounded = round_pairs(hi, lo, dtype)
    assert np.array_equal(rounded, [round_mpf(r, dtype) for r in refs], equal_nan=True)
    # Results: the correctly rounded value, its neighbours, a far value, inf and nan.
    kind = DTYPES[dtype]
    candidates = [rounded,
                  np.nextafter(rounded.astype(kind), kind(np.inf)).astype(np.float64),
                  np.nextafter(rounded.astype(kind), kind(-np.inf)).astype(np.float64),
                  rounded * 1.5 + 1.0,
                  np.full_like(rounded, np.inf), np.full_like(rounded, np.nan)]
    for values in candidates:
        codes = metrics.classify_many(values, hi, rounded)
        ulps = metrics.ulp_errors(values, hi, lo, dtype)
        rels = metrics.relative_errors(values, hi, lo)
        for i, (value, ref) in enumerate(zip(values.tolist(), refs)):
            expected_class = metrics.classify(value, ref, dtype)
            assert metrics.class_names(codes[i:i + 1])[0] == expected_class, (value, ref)
            if expected_class is None:
                # hi + lo holds the reference to 2**-106 relative, or 2**-1074 absolute where
                # the remainder falls below float64's subnormals: that bounds the difference.
                exact_ulp = metrics.ulp_error(value, ref, dtype)
                slack = math.ldexp(1, -1074 - mpf_ulp_exponent(ref, FORMATS[dtype]))
                assert ulps[i] == exact_ulp or abs(ulps[i] - exact_ulp) <= 1e-9 * exact_ulp + slack, (value, ref)
                exact_rel = metrics.relative_error(value, ref)
                rel_slack = float(mpmath.ldexp(1, -1074) / abs(ref)) if ref else 0.0
                assert rels[i] == exact_rel or abs(rels[i] - exact_rel) <= 1e-9 * exact_rel + rel_slack, (value, ref)


# --- bits of error -------------------------------------------------------------

@pytest.mark.parametrize("dtype, kind", [("float16", np.float16), ("float32", np.float32), ("float64", np.float64)])
@given(start=st.floats(allow_nan=False, allow_infinity=False, width=16), steps=st.integers(-300, 300))
@settings(max_examples=60, deadline=None)
def test_bits_of_error_count_the_floats_between(dtype: str, kind: type, start: float, steps: int) -> None:
    """log2(1 + k) for a result k floats away, counted by stepping with nextafter
    (across zero too: +0 and -0 are one float apart in no direction)."""
    reference = kind(start)
    result = reference
    toward = kind(np.inf) if steps > 0 else kind(-np.inf)
    taken = 0
    for _ in range(abs(steps)):
        following = np.nextafter(result, toward)
        if not np.isfinite(following):
            break
        taken += 0 if (following == 0 and result == 0) else 1
        result = following
    bits = metrics.bits_errors(np.array([float(result)]), np.array([float(reference)]), dtype)[0]
    assert bits == pytest.approx(np.log2(1 + taken))


def test_bits_of_error_stay_bounded_where_the_reference_is_zero() -> None:
    """A few thousandths against an exact zero: ulp error is astronomical, bits stay
    below the format's width (bfloat16: 16)."""
    values, zero = np.array([0.0029296875]), np.array([0.0])
    assert metrics.ulp_errors(values, zero, zero, "bfloat16")[0] > 1e30
    assert 13 < metrics.bits_errors(values, zero, "bfloat16")[0] < 16
    extremes = np.array([float(np.finfo(np.float32).max)]), np.array([-float(np.finfo(np.float32).max)])
    assert 31 < metrics.bits_errors(*extremes, "float32")[0] <= 32
    assert np.isnan(metrics.bits_errors(np.array([np.nan]), np.array([1.0]), "float32")[0])
    largest = float(np.finfo(np.float32).max)  # a reference that overflows float32 rounds to inf
    assert metrics.bits_errors(np.array([largest]), np.array([np.inf]), "float32")[0] == 1.0
    assert metrics.bits_errors(np.array([np.inf]), np.array([np.inf]), "float32")[0] == 0.0


def test_bits_of_error_round_an_upcast_result_into_the_dtype() -> None:
    """A float32 result for a float16 cell counts in float16's floats."""
    reference = np.array([1.0])
    assert metrics.bits_errors(np.array([1.0 + 2.0**-12]), reference, "float16")[0] == 0.0  # rounds to 1
    assert metrics.bits_errors(np.array([1.0 + 2.0**-10]), reference, "float16")[0] == 1.0
