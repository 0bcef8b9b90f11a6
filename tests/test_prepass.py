"""The float64 pre-pass (reference.prepass): its enclosures hold the exact value
(checked against Arb balls on drawn bit patterns and regimes), it settles only
what its enclosure proves (a constructed midpoint goes to the balls), and a set
settled through it stores the same roundings as one settled by balls alone."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpmath.libmp import libmpf

from harness.measure import quantity, regimes
from harness.measure.items import reference_items, with_params
from harness.measure.quantity import VALUE
from harness.measure.refsets import InputSet
from harness.model import registry
from harness.model.spec import LossSpec
from reference import certify, formats, gradients, prepass
from reference.arith import ENGINES

NARROW = ("float16", "bfloat16", "float32")
BITS = {"float16": (np.uint16, np.float16), "float32": (np.uint32, np.float32)}


def _exact_enclosures(loss: str, arrays: dict[str, np.ndarray], params: dict) -> list[tuple]:
    """(lower, upper) raw ends of each item's exact value from balls at 128 bits."""
    spec = registry.get(loss)
    formula = with_params(spec.reference, params)
    refs = certify.settle_items(formula, reference_items(spec, arrays), ENGINES["flint"])
    return [(r.lower, r.upper) for r in refs]


def _assert_contains(loss: str, arrays: dict[str, np.ndarray], params: dict) -> int:
    """Every finite pre-pass enclosure holds the exact value's enclosure; returns how many were checked."""
    spec = registry.get(loss)
    with np.errstate(all="ignore"):
        lower, upper = prepass.enclosure(prepass.FORMULAS[loss](*(arrays[a.name] for a in spec.args), **params))
    checked = 0
    for i, (low, high) in enumerate(_exact_enclosures(loss, arrays, params)):
        if not (math.isfinite(lower[i]) and math.isfinite(upper[i])) or low is None:
            continue
        assert libmpf.mpf_le(libmpf.from_float(lower[i]), low), (loss, i, lower[i])
        assert libmpf.mpf_le(high, libmpf.from_float(upper[i])), (loss, i, upper[i])
        checked += 1
    return checked


ELEMENTWISE = [name for name in prepass.FORMULAS if registry.get(name).layout.name == "ELEMENTWISE"]


@settings(max_examples=25, deadline=None)
@given(loss=st.sampled_from(ELEMENTWISE), dtype=st.sampled_from(sorted(BITS)), data=st.data())
def test_enclosures_hold_the_exact_value_on_bit_patterns(loss: str, dtype: str, data: st.DataObject) -> None:
    """Arbitrary bit patterns of the dtype (finite ones; the pre-pass leaves the rest
    to the balls) for every argument."""
    spec = registry.get(loss)
    _assert_contains(loss, _bit_patterns(spec, dtype, data), spec.resolve_params({}))


def _bit_patterns(spec: LossSpec, dtype: str, data: st.DataObject) -> dict[str, np.ndarray]:
    """20 arbitrary bit patterns of the dtype for every argument (finite ones; the
    pre-pass leaves the rest to the balls)."""
    unsigned, floating = BITS[dtype]
    width = 8 * np.dtype(unsigned).itemsize
    arrays = {}
    for a in spec.args:
        bits = data.draw(st.lists(st.integers(0, 2**width - 1), min_size=20, max_size=20))
        values = np.array(bits, dtype=unsigned).view(floating).astype(np.float64)
        arrays[a.name] = np.where(np.isfinite(values), values, 0.5)
    return arrays


@pytest.mark.parametrize("quantity_", ["value", "derivative"])
@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(NARROW), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_enclosures_hold_the_exact_value_in_every_regime(quantity_: str, dtype: str, seed: int,
                                                         data: st.DataObject) -> None:
    """Values and derivatives alike (the derivatives' checker is defined below)."""
    table, check = (prepass.FORMULAS, _assert_contains) if quantity_ == "value" else \
        (prepass.DERIVATIVES, _assert_derivative_contains)
    loss = data.draw(st.sampled_from(sorted(table)))
    spec = registry.get(loss)
    regime = data.draw(st.sampled_from(spec.regimes))
    check(loss, regimes.generate_items(spec, dtype, regime, seed, 0, 30, regimes.DEFAULT_WIDTH),
          spec.resolve_params({}))


def test_enclosures_are_narrow_on_typical_inputs() -> None:
    """Not a soundness check but the point of the pre-pass: typical items settle."""
    arrays = regimes.generate_items(registry.get("bce"), "float32", "typical", 0, 0, 1000, 1)
    result = prepass.FORMULAS["bce"](arrays["input"], arrays["target"])
    assert np.all(result.e <= np.abs(result.v) * 2.0**-44)


CASES = [(loss, dtype, regime) for loss in sorted(prepass.FORMULAS) for dtype in NARROW
         for regime in registry.get(loss).regimes]


@pytest.mark.parametrize(("loss", "dtype", "regime"), CASES, ids=["-".join(c) for c in CASES])
def test_sets_store_what_balls_alone_store(loss: str, dtype: str, regime: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Items and every size's mean and sum: the same roundings into the dtype and the
    same settled flags; a pre-passed value within 2**-36 of the balls' pair."""
    inputset = InputSet.with_defaults(loss, dtype, regime)
    sizes = (10, 100, 200)
    fast = VALUE.compute(inputset, sizes)
    monkeypatch.setattr(prepass, "FORMULAS", {})
    balls = VALUE.compute(inputset, sizes)
    assert np.array_equal(fast.items.rounded, balls.items.rounded, equal_nan=True)
    assert np.array_equal(fast.items.settled, balls.items.settled)
    prepassed = fast.items.precision == certify.PREPASS_PRECISION
    assert np.array_equal(fast.items.hi[~prepassed], balls.items.hi[~prepassed], equal_nan=True)
    exact = balls.items.hi[prepassed] + balls.items.lo[prepassed]
    assert np.all(np.abs(fast.items.hi[prepassed] - exact) <= np.abs(exact) * 2.0**-certify.RELATIVE_BITS)
    for key, reduced in fast.reduced.items():
        assert np.array_equal(reduced.rounded, balls.reduced[key].rounded, equal_nan=True), key
        assert reduced.settled[0] == balls.reduced[key].settled[0], key


def test_every_formula_settles_most_typical_items() -> None:
    for loss in prepass.FORMULAS:
        reference = VALUE.compute(InputSet.with_defaults(loss, "float32", "typical"), (300,))
        assert (reference.items.precision == certify.PREPASS_PRECISION).mean() > 0.9, loss


def _prepassed(loss: str, dtype: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    inputset = InputSet.with_defaults(loss, dtype, "typical")
    return quantity._vectorized(inputset, registry.get(loss), arrays).ok


def test_a_midpoint_with_a_tiny_tail_is_left_to_the_balls() -> None:
    """cross_entropy of [2**24, -1] at class 1 is 2**24 + 1, float32's midpoint between
    2**24 and 2**24 + 2, plus log1p(exp(-2**24 - 1)) > 0: it rounds up. Its pre-pass
    enclosure holds the midpoint, so the pre-pass leaves it; the balls round it up.
    The row [1, 0] (1 + log1p(exp(-1))) is nowhere near a tie and the pre-pass settles it."""
    rows = np.array([[2.0**24, -1.0], [1.0, 0.0]])
    arrays = {"input": rows, "target": np.array([1, 1])}
    assert _prepassed("cross_entropy", "float32", arrays).tolist() == [False, True]
    (midpoint,) = _exact_enclosures("cross_entropy", {"input": rows[:1], "target": np.array([1])}, {})
    assert formats.round_mpf(mpmath.mp.make_mpf(midpoint[0]), "float32") == 2.0**24 + 2
    assert formats.round_mpf(mpmath.mp.make_mpf(midpoint[1]), "float32") == 2.0**24 + 2


def test_a_value_next_to_a_float_is_left_to_the_balls() -> None:
    """bce_logits at z = 60, y = 0 is 60 + log1p(exp(-60)), 8.8e-27 above the float 60,
    below float64's resolution: the enclosure holds 60, so a result of 60.0 could not
    be told from exact. The balls keep the remainder (the result's error is not zero).
    At z = 30 the tail (9.4e-14) is wider than the enclosure: the pre-pass settles it."""
    arrays = {"input": np.array([60.0, 30.0]), "target": np.array([0.0, 0.0])}
    assert _prepassed("bce_logits", "float32", arrays).tolist() == [False, True]


def test_a_logit_far_below_the_others_is_settled_by_the_prepass() -> None:
    """cross_entropy of [2.5, -1e30, 1] at class 0 is log1p(exp(-1.5) + exp(-1e30 - 2.5)).
    The difference -1e30 - 2.5 rounds by far more than the 1/2 exp's bound allows,
    but exp of anything below -746 is under float64's smallest spacing: the
    pre-pass settles the row, with the rounding the balls give."""
    arrays = {"input": np.array([[2.5, -1e30, 1.0]]), "target": np.array([0])}
    assert _prepassed("cross_entropy", "float32", arrays).tolist() == [True]
    fast = quantity._vectorized(InputSet.with_defaults("cross_entropy", "float32", "typical"),
                                registry.get("cross_entropy"), arrays)
    ((low, high),) = _exact_enclosures("cross_entropy", arrays, {})
    assert libmpf.mpf_le(libmpf.from_float(fast.lower[0]), low) and libmpf.mpf_le(high, libmpf.from_float(fast.upper[0]))
    assert formats.round_mpf(mpmath.mp.make_mpf(low), "float32") == np.float32(fast.hi[0])


def test_float64_sets_never_use_the_prepass() -> None:
    arrays = regimes.generate_items(registry.get("bce"), "float64", "typical", 0, 0, 10, 1)
    assert quantity._vectorized(InputSet.with_defaults("bce", "float64", "typical"), registry.get("bce"),
                                arrays) is None


def test_libm_is_within_the_checked_bound_here() -> None:
    """The one assumption, measured on this machine against Arb."""
    worst = prepass.worst_ulps()
    assert set(worst) == {"exp", "expm1", "log", "log1p"}
    assert all(0 <= u <= prepass.CHECKED_ULPS for u in worst.values()), worst


def test_a_libm_beyond_the_bound_turns_the_prepass_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepass, "worst_ulps", lambda: {"exp": 0.5, "expm1": 0.5, "log": 7.0, "log1p": 0.5})
    prepass.libm_checked.cache_clear()
    try:
        arrays = regimes.generate_items(registry.get("bce"), "float32", "typical", 0, 0, 10, 1)
        assert quantity._vectorized(InputSet.with_defaults("bce", "float32", "typical"), registry.get("bce"),
                                    arrays) is None
    finally:
        prepass.libm_checked.cache_clear()


def _raw(x: float) -> tuple:
    return libmpf.from_float(x)


@pytest.mark.parametrize(("lower", "upper", "expected"), [
    (1.0 + 2.0**-30, 1.0 + 2.0**-30 + 2.0**-44, True),              # inside one float32 rounding interval, narrow
    (1.0 + 2.0**-24 - 2.0**-50, 1.0 + 2.0**-24 + 2.0**-50, False),  # holds the midpoint
    (1.0 + 2.0**-30, 1.0 + 2.0**-26, False),             # one rounding, but wider than 2**-20 spacing
    (1.0 - 2.0**-52, 1.0 + 2.0**-52, False),             # two binades
    (-1.0 - 2.0**-30, -1.0 - 2.0**-30 - 2.0**-44, True),
    (0.0, 2.0**-60, False),                               # zero: no binade
    (1.0 + 2.0**-23 - 2.0**-50, 1.0 + 2.0**-23 + 2.0**-50, False),  # holds a float32 number
    (2.0**200, 2.0**200 * (1 + 2.0**-40), True),          # past float32's range: rounds to inf, relative only
])
def test_rounding_determined(lower: float, upper: float, expected: bool) -> None:
    fmt = formats.get_format("float32")
    assert certify.rounding_determined(_raw(min(lower, upper)), _raw(max(lower, upper)), fmt) is expected


GRADIENT_CASES = [(loss, dtype, regime) for loss in sorted(prepass.DERIVATIVES) for dtype in NARROW
                  for regime in registry.get(loss).regimes]


@pytest.mark.parametrize(("loss", "dtype", "regime"), GRADIENT_CASES, ids=["-".join(c) for c in GRADIENT_CASES])
def test_gradient_sets_store_what_balls_alone_store(loss: str, dtype: str, regime: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every size's components: the same roundings, settled and defined flags; a
    pre-passed component within 2**-36 of the balls' pair."""
    inputset = InputSet.with_defaults(loss, dtype, regime)
    sizes = (10, 100, 200)
    gradient = quantity.gradient_of(loss)
    fast = gradient.compute(inputset, sizes)
    monkeypatch.setattr(prepass, "DERIVATIVES", {})
    balls = gradient.compute(inputset, sizes)
    for size in sizes:
        f, b = fast[size], balls[size]
        assert np.array_equal(f.defined, b.defined), size
        assert np.array_equal(f.ref.rounded, b.ref.rounded, equal_nan=True), size
        assert np.array_equal(f.ref.settled, b.ref.settled), size
        prepassed = f.ref.precision == certify.PREPASS_PRECISION
        assert np.array_equal(f.ref.hi[~prepassed], b.ref.hi[~prepassed], equal_nan=True)
        exact = b.ref.hi[prepassed] + b.ref.lo[prepassed]
        assert np.all(np.abs(f.ref.hi[prepassed] - exact) <= np.abs(exact) * 2.0**-certify.RELATIVE_BITS)


def test_every_derivative_settles_most_typical_items() -> None:
    """The point of it: on typical inputs most items skip the balls. The hinges' are
    exact zeros past the margin (15% of typical items, half of margin_ranking's), and
    soft_cross_entropy's sum_c q_c softmax_j - q_j cancels in float32 rows where the
    softmax is close to the target: those the balls settle."""
    zeros = {"hinge": 0.7, "squared_hinge": 0.7, "margin_ranking": 0.4, "soft_cross_entropy": 0.1}
    for loss in prepass.DERIVATIVES:
        reference = quantity.gradient_of(loss).compute(InputSet.with_defaults(loss, "float32", "typical"), (300,))
        share = (reference[300].ref.precision == certify.PREPASS_PRECISION).mean()
        assert share > zeros.get(loss, 0.9), (loss, share)


def _assert_derivative_contains(loss: str, arrays: dict[str, np.ndarray], params: dict) -> int:
    """Every finite pre-pass enclosure of a derivative component holds the balls'
    enclosure of the exact one; returns how many were checked."""
    spec = registry.get(loss)
    with np.errstate(all="ignore"):
        lower, upper = prepass.enclosure(prepass.DERIVATIVES[loss](*(arrays[a.name] for a in spec.args), **params))
    items = reference_items(spec, arrays)
    exact = gradients.settle(with_params(spec.derivative, params), items, [(1,)] * len(items), ENGINES["flint"])
    lower, upper = lower.reshape(len(items), -1), upper.reshape(len(items), -1)
    checked = 0
    for i, (components,) in enumerate(exact):
        for k, ref in enumerate(components):
            if not (math.isfinite(lower[i, k]) and math.isfinite(upper[i, k])) or ref.lower is None:
                continue
            assert libmpf.mpf_le(libmpf.from_float(lower[i, k]), ref.lower), (loss, i, k, lower[i, k])
            assert libmpf.mpf_le(ref.upper, libmpf.from_float(upper[i, k])), (loss, i, k, upper[i, k])
            checked += 1
    return checked


DERIVATIVES_ELEMENTWISE = [n for n in prepass.DERIVATIVES if registry.get(n).layout.name == "ELEMENTWISE"]


@settings(max_examples=25, deadline=None)
@given(loss=st.sampled_from(DERIVATIVES_ELEMENTWISE), dtype=st.sampled_from(sorted(BITS)), data=st.data())
def test_derivative_enclosures_hold_the_exact_value_on_bit_patterns(loss: str, dtype: str,
                                                                     data: st.DataObject) -> None:
    spec = registry.get(loss)
    _assert_derivative_contains(loss, _bit_patterns(spec, dtype, data), spec.resolve_params({}))

