"""The reference derivatives: every loss's analytic derivative against mpmath's
numerical differentiation of its own reference formula, exact Fraction
gradients of the rational losses (reduction included), and the conventions at
points with no derivative."""
from __future__ import annotations

import functools
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from harness.model import registry
from harness.measure import regimes
from harness.measure.items import reference_items, with_params
from harness.model.spec import Layout
from reference import certify, derivatives, gradients
from reference.arith import ENGINES, bounds
from reference.certify import RefValue

from test_certify import exact_pair

mpf = mpmath.mpf
BALLS = ENGINES["flint"]
DIFF_PRECISIONS = (128, 256, 512, 1024, 2048, 4096)
# Regimes whose points lie far from every corner (a finite difference straddling
# a corner measures neither side); saturated reaches logits up to 1e4.
SMOOTH_REGIMES = ("typical", "saturated")


def _items(loss: str, regime: str, seed: int = 11) -> list[tuple]:
    spec = registry.get(loss)
    # bce's saturated probabilities are often exactly 0 or 1 (a domain edge): draw more.
    arrays = regimes.generate(spec, "float64", regime, seed, size=32 if loss == "bce" else 12, width=4)
    return reference_items(spec, arrays)


def _with_component(item: tuple, j: int, value: mpf) -> tuple:
    """The item with input component j replaced (the whole input if element-wise)."""
    if not isinstance(item[0], list):
        return (value, *item[1:])
    row = list(item[0])
    row[j] = value
    return (row, *item[1:])


def _point(result: object) -> mpf | None:
    """A formula's result as one number: its enclosure's midpoint."""
    if result is None:
        return None
    return RefValue(*bounds(BALLS, result), True, 0).value


def _at(prec: int, function: object, *args: object) -> object:
    """``function(c, *args)`` with balls of ``prec`` bits."""
    with BALLS.precision(prec), mpmath.workprec(prec):
        return function(BALLS, *args)  # type: ignore[operator]


def _numerical(loss: str, item: tuple, j: int, prec: int) -> mpf:
    """f'(x) by central differences at ``prec`` bits, with a step relative to the
    component (absolute at zero)."""
    spec = registry.get(loss)
    formula = with_params(spec.reference, spec.resolve_params({}))
    x = item[0][j] if isinstance(item[0], list) else item[0]
    with mpmath.workprec(prec):
        step = mpmath.ldexp(1, (int(mpmath.mag(x)) if x else 0) - prec)
        return mpmath.diff(lambda t: _point(_at(mpmath.mp.prec, formula, *_with_component(item, j, t))), x, h=step)


def _domain_edge(loss: str, item: tuple) -> bool:
    """Whether the item's input lies on the edge of the loss's domain (a probability of 0 or 1)."""
    return loss in ("bce", "categorical_ce", "kl_div") and any(
        v in (0, 1) for v in (item[0] if isinstance(item[0], list) else [item[0]]))


def _cases() -> list[tuple[str, str]]:
    return [(loss, regime) for loss in registry.names() for regime in SMOOTH_REGIMES
            if regime in registry.get(loss).regimes]


@pytest.mark.parametrize(("loss", "regime"), _cases())
def test_analytic_derivative_matches_mpmath_diff(loss: str, regime: str) -> None:
    """Central differences lose about half the working precision, and more where
    the derivative is far below the loss, so agreement is asked to 2**-(prec/2)
    relative, raising the precision until it holds or runs out."""
    spec = registry.get(loss)
    derivative = with_params(spec.derivative, spec.resolve_params({}))
    compared = 0
    for item in _items(loss, regime):
        prec = DIFF_PRECISIONS[-1] * 2
        analytic = _at(prec, derivative, *item)
        with mpmath.workprec(prec):
            analytic = [_point(v) for v in analytic]
        for j, exact in enumerate(analytic):
            if exact is None or not mpmath.isfinite(exact):  # a corner, or p = 1 in bce: nothing to difference
                continue
            for prec in DIFF_PRECISIONS:
                numeric = _numerical(loss, item, j, prec)
                if mpmath.isnan(numeric) or abs(numeric - exact) <= mpmath.ldexp(abs(exact), -prec // 2):
                    break
            else:
                pytest.fail(f"{loss} {regime}: component {j} of {item}: analytic {exact}, numerical {numeric}")
            if mpmath.isnan(numeric):
                assert _domain_edge(loss, item), f"{loss}: nan difference inside the domain at {item}"
                continue  # p = 1 in bce: one side of the difference lies outside the domain
            compared += 1
    assert compared >= 8, f"{loss} {regime}: only {compared} components had a derivative"


# --- exact gradients of the rational losses, reduction included ------------------------

def _fraction(value: mpf) -> Fraction:
    sign, mantissa, exponent, _ = value._mpf_
    return (-1) ** sign * Fraction(int(mantissa)) * Fraction(2) ** int(exponent)


def _fraction_sign(d: Fraction) -> Fraction:
    return Fraction((d > 0) - (d < 0))


def _huber_slope(d: Fraction) -> Fraction:
    return d if abs(d) <= 1 else _fraction_sign(d)


def _hinge_slope(s: Fraction, y: Fraction) -> Fraction:
    return -y if 1 - y * s > 0 else Fraction(0)


RATIONAL = {  # loss -> (d item / d input from Fractions, inputs that avoid the corners)
    "mse": (lambda x, y: 2 * (x - y), lambda rng: (rng.normal(size=40), rng.normal(size=40))),
    "mae": (lambda x, y: _fraction_sign(x - y), lambda rng: (rng.normal(size=40), rng.normal(size=40))),
    "huber": (lambda x, y: _huber_slope(x - y), lambda rng: (rng.normal(scale=2, size=40), rng.normal(size=40))),
    "hinge": (_hinge_slope, lambda rng: (rng.normal(scale=2, size=40), rng.choice([-1.0, 1.0], size=40))),
}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", sorted(RATIONAL))
def test_rational_gradients_match_fractions(loss: str, dtype: str, reduction: str) -> None:
    slope, draw = RATIONAL[loss]
    x, y = (a.astype(dtype).astype(np.float64) for a in draw(np.random.default_rng(5)))
    if loss == "hinge":
        assert all(1 - b * a != 0 for a, b in zip(x, y)), "a draw on the corner"
    spec = registry.get(loss)
    derivative = with_params(spec.derivative, spec.resolve_params({}))
    items = reference_items(spec, {"input": x, "target": y})
    refs = gradients.evaluate(derivative, items, reduction, BALLS)
    count = len(x) if reduction == "mean" else 1
    for ref, a, b in zip(refs, x, y):
        expected = slope(Fraction(a), Fraction(b)) / count
        assert ref.settled
        assert ref.pair == exact_pair(expected)  # the stored pair of the exact value, the mean's division included
        if reduction == "sum":  # no division: the reference is the exact value itself
            assert ref.rational == expected


def test_saturated_bce_logits_reference_gradient_is_minus_one_under_sum() -> None:
    """d/dz softplus(-z) = -sigmoid(-z) = -1 + e^-1000 / (1 + e^-1000): -1 to far below
    any float's ulp, and the remainder's sign is still known (above -1)."""
    spec = registry.get("bce_logits")
    (ref,) = gradients.evaluate(spec.derivative, [(mpf(-1000), mpf(1))], "sum", BALLS)
    assert ref.settled and ref.pair == (-1.0, 2.0**-1074)


@pytest.mark.parametrize(("loss", "item"), [
    ("mae", (mpf(2), mpf(2))),
    ("l1_penalty", (mpf(0),)),
    ("hinge", (mpf(1), mpf(1))),  # 1 - y s = 0
    ("margin_ranking", (mpf(3), mpf(1), mpf(3))),  # margin 0, x1 = x2
])
def test_corners_have_no_derivative(loss: str, item: tuple) -> None:
    spec = registry.get(loss)
    assert with_params(spec.derivative, spec.resolve_params({}))(BALLS, *item) == (None,)


def test_row_corners_leave_the_other_components_defined() -> None:
    # categorical_hinge: runner-up tied between classes 1 and 2, hinge active.
    grad = derivatives.categorical_hinge(BALLS, [mpf(0), mpf(0.5), mpf(0.5)], 0)
    assert grad[0] == -1 and grad[1] is None and grad[2] is None
    # multi_margin with margin 1: class 1 exactly on its corner (1 - 0 + (-1) = 0).
    item = ([mpf(0), mpf(-1), mpf(2)], 0)
    (grad,) = certify.settle_items(functools.partial(derivatives.multi_margin, margin=mpf(1)), [item], BALLS)
    assert grad[1].value is None and grad[0].value is None and grad[2].pair == exact_pair(Fraction(1, 3))


def test_infinite_inputs_have_no_derivative_and_nan_propagates() -> None:
    assert derivatives.mse(BALLS, mpmath.inf, mpf(1)) == (None,)
    assert mpmath.isnan(derivatives.mse(BALLS, mpmath.nan, mpf(1))[0])
    row = derivatives.cross_entropy(BALLS, [mpf(1), mpmath.inf, mpf(0)], 0)
    assert row == (None, None, None)


def test_every_loss_has_a_derivative_of_its_input_shape() -> None:
    for loss in registry.names():
        spec = registry.get(loss)
        item = _items(loss, "typical")[0]
        width = len(item[0]) if spec.layout is Layout.ROWWISE else 1
        assert len(_at(128, with_params(spec.derivative, spec.resolve_params({})), *item)) == width, loss


def test_an_exact_gradient_of_a_transcendental_loss_stays_exact_under_the_mean() -> None:
    """bce_logits at z = 0, y = 1/2: sigmoid(0) - 1/2 = 0 exactly, which balls compute
    exactly too; divided by the count it must still settle (as 0)."""
    spec = registry.get("bce_logits")
    refs = gradients.evaluate(spec.derivative, [(mpf(0), mpf(0.5)), (mpf(1), mpf(0))] * 5, "mean", BALLS)
    assert refs[0].settled and refs[0].pair == (0.0, 0.0)
