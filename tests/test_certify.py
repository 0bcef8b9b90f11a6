"""Sound settlement (reference.certify): an enclosure settles a value only when every
point of it has the same stored pair; ties decided by terms far below the working
precision; escalation, honest unsettled values, and the two engines agreeing."""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
from mpmath.libmp import libmpf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.measure import regimes
from harness.measure.evaluate import compute_reference
from harness.measure.items import reference_items, with_params
from reference.formats import round_pairs
from harness.model import registry
from harness.model.spec import Domain, Layout
from reference import certify, gradients, vectorized
from reference.arith import ENGINES, Shifted, shift
from reference.formats import FORMATS, round_rational
from reference.mpexact import guarded_total, is_exact, to_fraction

from test_reference_exact import ORACLES, oracle as exact_oracle

mpf = mpmath.mpf
EPS = 2.0**-30
# KL(p || q) with q = p +- eps: the two row terms cancel down to about 2 eps^2.
CLOSE_ROWS = {"input": np.array([[0.5 + EPS, 0.5 - EPS]]), "target": np.array([[0.5, 0.5]])}


FLOAT64_OVERFLOW = Fraction(2**1024 - 2**970)  # max + half an ulp: rounds to inf


def exact_pair(q: Fraction) -> tuple[float, float]:
    """The stored pair of an exact rational, from CPython's correctly rounded
    Fraction -> float (independent of reference.certify): hi nearest q, lo nearest
    the remainder, a remainder below the subnormals kept as +-2**-1074."""
    if abs(q) >= FLOAT64_OVERFLOW:
        return (math.inf if q > 0 else -math.inf), 0.0
    # CPython refuses int / int at 2**1024 before rounding, where the format rounds to max.
    hi = float(q) if abs(q) < 2**1023 else round_rational(q, FORMATS["float64"])
    remainder = q - Fraction(hi)
    lo = float(remainder)
    if lo == 0 and remainder:
        lo = math.copysign(2.0**-1074, remainder)
    return hi, lo


def _closed_form() -> float:
    """KL = -log(1 - 4 eps^2) / 2, computed independently at 2000 bits."""
    with mpmath.workprec(2000):
        return float(-mpmath.log1p(-4 * mpmath.mpf(EPS) ** 2) / 2)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_cancellation_escalates_until_the_enclosure_settles(engine: str) -> None:
    (ref,) = compute_reference(registry.get("kl_div"), CLOSE_ROWS, {}, "sum", engine)
    assert ref.settled
    assert ref.precision > certify.START_PREC  # the first enclosure was too wide
    assert ref.pair[0] == _closed_form()


def test_unsettled_is_reported_not_guessed() -> None:
    (ref,) = compute_reference(registry.get("kl_div"), CLOSE_ROWS, {}, "sum", max_prec=certify.START_PREC)
    assert not ref.settled


def test_items_escalate_independently() -> None:
    rows = {"input": np.array([[0.5 + EPS, 0.5 - EPS], [0.25, 0.75]]), "target": np.array([[0.5, 0.5], [0.5, 0.5]])}
    first, second = compute_reference(registry.get("kl_div"), rows, {}, "none")
    assert first.precision > certify.START_PREC == second.precision


def test_an_enclosure_holding_a_tie_does_not_settle() -> None:
    # Two values on either side of a float16 tie, both rounding to the same float64.
    with mpmath.workprec(200):
        midpoint = 1 + mpmath.mpf(2) ** -11  # halfway between 1 and 1 + 2**-10
        below, above = midpoint - mpmath.mpf(2) ** -120, midpoint + mpmath.mpf(2) ** -120
    assert not certify.determined(below._mpf_, above._mpf_)
    assert certify.determined(midpoint._mpf_, midpoint._mpf_)  # the exact tie itself is a point


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("fmt", ["float64", "float32", "float16", "bfloat16"])
def test_a_tail_far_below_precision_decides_a_tie(engine: str, sign: int, fmt: str) -> None:
    """An exact head on a midpoint of the format plus a tail of e^-5000 (2**-7213, far
    below every precision tried): the value rounds toward the tail's side."""
    precision = FORMATS[fmt].precision
    head = mpmath.fadd(1, mpmath.ldexp(1, -precision), exact=True)  # halfway between 1 and its successor
    c = ENGINES[engine]

    def formula(c: object) -> Shifted:
        tail = c.exp_of(mpf(-5000))  # type: ignore[attr-defined]
        return shift(c, head, tail if sign > 0 else -tail)  # type: ignore[arg-type]

    (ref,) = certify.settle_items(formula, [()], c)
    assert ref.settled and ref.precision == certify.START_PREC
    exact = Fraction(1) + Fraction(1, 2**precision) + sign * Fraction(1, 2**7300)  # any tail below half an ulp
    assert ref.pair == exact_pair(exact)
    step = 2.0**(1 - precision)
    expected = 1 + step if sign > 0 else 1.0
    rounded = round_rational(exact, FORMATS[fmt])
    assert rounded == expected


def test_the_issues_cross_entropy_midpoint() -> None:
    """-2**-44 and 1000: the exact loss is 1000 + 2**-44 (a float64 midpoint) plus
    log1p(e^(-1000 - 2**-44)) > 0, so it rounds up."""
    arrays = {"input": np.array([[-5.684341886080802e-14, 1000.0]]), "target": np.array([0])}
    for engine in ENGINES:
        (ref,) = compute_reference(registry.get("cross_entropy"), arrays, {}, "none", engine)
        assert ref.settled and ref.pair[0] == 1000.0000000000001


def test_smooth_l1_is_not_rounded_twice() -> None:
    """The issue's three inputs: (d^2 / 2) / beta exactly, beta = 1."""
    d = [0.004882812500000001, 0.004882812499999997, 0.00543398858025921]
    arrays = {"input": np.array(d), "target": np.zeros(3)}
    refs = compute_reference(registry.get("smooth_l1"), arrays, {"beta": 1.0}, "none")
    assert [r.pair[0] for r in refs] == [float(Fraction(v) ** 2 / 2) for v in d]
    assert [r.pair[0] for r in refs] == [1.192092895507813e-05, 1.1920928955078113e-05, 1.4764115945193755e-05]


# --- properties over drawn bit patterns ---------------------------------------------

def _float_of(bits: int, fmt: str) -> float:
    """The float of ``fmt`` with these bits (as float64); non-finite patterns excluded by the caller."""
    if fmt == "float64":
        return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])
    if fmt == "float32":
        return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])
    if fmt == "float16":
        return float(np.array([bits], dtype=np.uint16).view(np.float16)[0])
    import ml_dtypes
    return float(np.array([bits], dtype=np.uint16).view(ml_dtypes.bfloat16)[0])


WIDTHS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}


@st.composite
def floats_of(draw: st.DrawFn, fmt: str, finite: bool = True) -> float:
    """Any float of ``fmt`` by its bit pattern: subnormals, huge and tiny values alike."""
    value = _float_of(draw(st.integers(0, 2 ** WIDTHS[fmt] - 1)), fmt)
    if finite and not math.isfinite(value):
        value = 0.0
    return value


def _smooth_l1_exact(x: Fraction, y: Fraction, beta: Fraction) -> Fraction:
    d = abs(x - y)
    return d * d / (2 * beta) if d < beta else d - beta / 2


def _huber_exact(x: Fraction, y: Fraction, delta: Fraction) -> Fraction:
    d = abs(x - y)
    return d * d / 2 if d <= delta else delta * (d - delta / 2)


@pytest.mark.parametrize("fmt", list(WIDTHS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_smooth_l1_equals_huber_over_beta(fmt: str, data: st.DataObject) -> None:
    """smooth_l1 with beta is huber with delta = beta, divided by beta: the two
    references, each exact, agree bit for bit in the stored pair."""
    x, y = data.draw(floats_of(fmt)), data.draw(floats_of(fmt))
    beta = data.draw(st.sampled_from([1.0, 0.5, 2.0, 2.5, 0.1]))
    arrays = {"input": np.array([x]), "target": np.array([y])}
    (smooth,) = compute_reference(registry.get("smooth_l1"), arrays, {"beta": beta}, "none")
    (huber,) = compute_reference(registry.get("huber"), arrays, {"delta": beta}, "none")
    q = _huber_exact(Fraction(x), Fraction(y), Fraction(beta)) / Fraction(beta)
    assert q == _smooth_l1_exact(Fraction(x), Fraction(y), Fraction(beta))
    assert smooth.settled and huber.settled
    assert smooth.pair == exact_pair(q)
    assert huber.pair == exact_pair(_huber_exact(Fraction(x), Fraction(y), Fraction(beta)))


def _draw_arrays(data: st.DataObject, loss: str, fmt: str) -> dict[str, np.ndarray]:
    """A few items of ``loss`` from drawn bit patterns (labels and class indices drawn
    from their domains)."""
    spec = registry.get(loss)
    rows, width = (3, 4) if spec.layout is Layout.ROWWISE else (4, 1)
    arrays = {}
    for arg in spec.args:
        count = rows if arg.per_row or spec.layout is Layout.ELEMENTWISE else rows * width
        if arg.domain is Domain.SIGN_LABEL:
            values = data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=count, max_size=count))
        elif arg.domain is Domain.CLASS_INDEX:
            values = data.draw(st.lists(st.integers(0, width - 1), min_size=count, max_size=count))
        else:
            values = data.draw(st.lists(floats_of(fmt), min_size=count, max_size=count))
        array = np.array(values)
        arrays[arg.name] = array.reshape(rows, width) if count == rows * width and width > 1 else array
    return arrays


@pytest.mark.parametrize("loss", sorted(ORACLES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_exact_loss_stores_the_exact_rational(loss: str, data: st.DataObject) -> None:
    """Bit patterns of every format: each item and the mean hold the exact rational's pair."""
    fmt = data.draw(st.sampled_from(list(WIDTHS)))
    arrays = _draw_arrays(data, loss, fmt)
    params = registry.get(loss).resolve_params({})
    assert is_exact(with_params(registry.get(loss).reference, params))
    for reduction in ("none", "mean"):
        refs = compute_reference(registry.get(loss), arrays, params, reduction)
        expected = exact_oracle(loss, arrays, params, reduction)
        assert all(r.settled for r in refs)
        assert [repr(r.pair) for r in refs] == [repr(exact_pair(q)) for q in expected]


CHEAP_REGIMES = ("typical", "wide", "saturated", "cancellation", "edge", "near_overflow")


@pytest.mark.parametrize("loss", sorted(registry.names()))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_both_engines_store_the_same_numbers(loss: str, data: st.DataObject) -> None:
    """Arb balls and mpmath intervals, over drawn seeds of every regime and dtype:
    the same settled items, reductions and gradients."""
    spec = registry.get(loss)
    regime = data.draw(st.sampled_from([r for r in CHEAP_REGIMES if r in spec.regimes]))
    dtype = data.draw(st.sampled_from(list(WIDTHS)))
    seed = data.draw(st.integers(0, 2**20))
    arrays = regimes.generate(spec, dtype, regime, seed, size=8, width=4)
    params = spec.resolve_params({})
    for reduction in ("none", "mean"):
        flint, interval = (compute_reference(spec, arrays, params, reduction, engine) for engine in ENGINES)
        assert [_stored(r) for r in flint] == [_stored(r) for r in interval], reduction
    items = reference_items(spec, arrays)
    derivative = with_params(spec.derivative, params)
    flint, interval = (gradients.evaluate(derivative, items, spec.default_reduction, c) for c in ENGINES.values())
    assert [_stored(r) for r in flint] == [_stored(r) for r in interval]


def _stored(ref: certify.RefValue) -> tuple[bool, str]:
    """What the store keeps of a settled reference (repr, so that nan equals nan);
    an unsettled one is only an estimate, each engine's own."""
    return ref.settled, repr(ref.pair) if ref.settled else ""


@pytest.mark.parametrize("fmt", list(WIDTHS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cross_entropy_on_a_midpoint_rounds_up(fmt: str, data: st.DataObject) -> None:
    """Logits [M, -h] with h half an ulp of M in the format, target 1: the loss is
    the midpoint M + h plus log1p(e^-(M + h)) > 0, far below half an ulp for M >= 64,
    so it rounds up to M's successor."""
    precision, emax = FORMATS[fmt].precision, FORMATS[fmt].emax
    exponent = data.draw(st.integers(6, emax - 2))
    significand = 2 ** (precision - 1) + data.draw(st.integers(0, 2 ** (precision - 1) - 1))
    spacing = 2.0 ** (exponent - precision + 1)
    m = significand * spacing  # a float of fmt in [64, max / 2)
    arrays = {"input": np.array([[m, -spacing / 2]]), "target": np.array([1])}
    for engine in ENGINES:
        (ref,) = compute_reference(registry.get("cross_entropy"), arrays, {}, "none", engine)
        rounded = round_pairs(np.array([ref.pair[0]]), np.array([ref.pair[1]]), fmt)[0]
        assert ref.settled and rounded == m + spacing


@settings(max_examples=300, deadline=None)
@given(numerator=st.integers(-2**300, 2**300).filter(bool), denominator=st.integers(1, 2**200),
       exponent=st.integers(-1100, 1000))
def test_the_pair_of_an_exact_rational(numerator: int, denominator: int, exponent: int) -> None:
    """certify.split_rational (fast path through two close dyadics, else exact)
    against CPython's correctly rounded Fraction -> float."""
    q = Fraction(numerator, denominator) * Fraction(2) ** exponent
    assert repr(certify.split_rational(q)) == repr(exact_pair(q))


INF = math.inf
LIMITS = [  # loss, input, target, the limit as the infinite input grows, the others fixed
    ("poisson_nll", [INF], [3.0], INF),  # x - y log x -> +inf
    ("poisson_nll", [1.0], [INF], 1.0),  # log 1 = 0: the target does not matter
    ("poisson_nll", [0.5], [INF], INF),  # -y log x with log x < 0
    ("bce_logits", [INF], [1.0], 0.0),
    ("bce_logits", [-INF], [1.0], INF),
    ("cross_entropy", [[INF, 0.0, 1.0]], [0], 0.0),  # the target's logit alone at +inf
    ("cross_entropy", [[INF, 0.0, 1.0]], [1], INF),  # another logit at +inf
    ("cross_entropy", [[INF, INF, 1.0]], [0], math.nan),  # two at +inf: no limit
    ("cross_entropy", [[-INF, 0.0]], [0], INF),
    ("soft_cross_entropy", [[INF, 0.0]], [[1.0, 0.0]], 0.0),
    ("soft_cross_entropy", [[INF, 0.0]], [[0.5, 0.5]], INF),
    ("mse", [INF], [INF], math.nan),  # inf - inf
    ("log_cosh", [-INF], [0.0], INF),
    ("gaussian_nll", [1.0], [0.0], INF),  # with var = +inf below: log var grows
]


@pytest.mark.parametrize(("loss", "x", "y", "limit"), LIMITS)
def test_non_finite_inputs_follow_the_limit(loss: str, x: list, y: list, limit: float) -> None:
    arrays = {"input": np.array(x), "target": np.array(y) if loss != "cross_entropy" else np.array(y, dtype=int)}
    params = {}
    if loss == "gaussian_nll":
        arrays["var"] = np.array([INF])
    for engine in ENGINES:
        (ref,) = compute_reference(registry.get(loss), arrays, params, "none", engine)
        assert ref.settled and repr(ref.pair[0]) == repr(limit), (loss, engine)
    # The same limit as the two-class cross-entropy that bce_logits is: logits (z, 0), target 0.
    if loss == "bce_logits" and y == [1.0]:
        rows = {"input": np.array([[x[0], 0.0]]), "target": np.array([0])}
        (ref,) = compute_reference(registry.get("cross_entropy"), rows, {}, "none")
        assert repr(ref.pair[0]) == repr(limit)


VECTORIZED = sorted(vectorized.EXACT)


def _check_vectorized(loss: str, arrays: dict[str, np.ndarray], params: dict[str, float]) -> np.ndarray:
    """The float64 error-free evaluation's pairs, where it claims them, equal the
    certified per-item path's; returns where it claimed them."""
    spec = registry.get(loss)
    hi, lo, ok = vectorized.EXACT[loss](*(arrays[a.name] for a in spec.args), **params)
    refs = compute_reference(spec, arrays, params, "none")
    for i in np.flatnonzero(ok):
        assert repr((float(hi[i] + 0.0), float(lo[i]))) == repr(refs[i].pair), (loss, i, [arrays[a.name][i] for a in spec.args])
    return ok


@pytest.mark.parametrize("loss", VECTORIZED)
@pytest.mark.parametrize("dtype", list(WIDTHS))
def test_the_vectorized_rational_losses_store_the_certified_pairs(loss: str, dtype: str) -> None:
    spec = registry.get(loss)
    claimed = 0
    for regime in spec.regimes:
        arrays = regimes.generate(spec, dtype, regime, seed=5, size=400)
        ok = _check_vectorized(loss, arrays, spec.resolve_params({}))
        claimed += ok.sum()
        if regime == "typical" and dtype != "float64":  # float64 differences are often inexact
            assert ok.mean() > 0.95  # where it is meant to take over
    assert claimed


@pytest.mark.parametrize("loss", VECTORIZED)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_the_vectorized_rational_losses_on_drawn_bit_patterns(loss: str, data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(list(WIDTHS)))
    params = registry.get(loss).resolve_params({})
    if "delta" in params or "beta" in params:
        params = {k: data.draw(st.sampled_from([1.0, 0.5, 2.5, 2.0**-3])) for k in params}
    _check_vectorized(loss, _draw_arrays(data, loss, fmt), params)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300))
def test_float_totals_is_the_exact_sum(values: list[float]) -> None:
    """The exact sum of float64 values (the vectorized items' reductions) against Fractions."""
    half = len(values) // 2
    lower, upper, _ = certify.float_totals(np.array(values[:half]), np.array(values[half:]))
    assert lower == upper
    assert to_fraction(mpmath.mp.make_mpf(lower)) == sum((Fraction(v) for v in values), Fraction(0))


def test_a_sum_of_terms_each_far_below_the_next_neither_recurses_nor_loses_its_sign() -> None:
    """3000 terms e^-(1e6 .. 1e300): no exact sum fits in memory, and no stack
    holds a level per term; the total keeps the largest term and the sign below it."""
    rng = np.random.default_rng(4)
    exponents = sorted({int(v) for v in rng.integers(10**6, 10**18, size=3000)})
    terms = [libmpf.from_man_exp(1, -e) for e in exponents]
    total = mpmath.mp.make_mpf(guarded_total(terms))
    largest = mpmath.mp.make_mpf(terms[0])
    assert largest < total < 2 * largest


def test_focal_of_float64_near_overflow_settles() -> None:
    """Its losses reach e^-1e300: 2000 of them in one chunk's reduction (they once
    exhausted the recursion limit)."""
    from harness.measure.quantity import VALUE
    from harness.measure.refsets import InputSet
    reference = VALUE.compute(InputSet.with_defaults("focal", "float64", "near_overflow"), [10, 2000])
    assert reference.items.settled.all() and all(r.settled[0] for r in reference.reduced.values())


@pytest.mark.parametrize("engine", list(ENGINES))
def test_log_cosh_of_a_huge_difference_settles_at_the_first_precision(engine: str) -> None:
    """log cosh d = d - log 2 + log1p(exp(-2d)): at d = 2**1000 the pair is (d, the
    float64 nearest -log 2), 1000 bits below d. The exact d is kept apart from the
    tail, so the first precision settles it (adding them in the arithmetic would
    need over 1053 bits)."""
    d = 2.0**1000
    (ref,) = compute_reference(registry.get("log_cosh"), {"input": np.array([d]), "target": np.array([0.0])}, {},
                               "none", engine)
    with mpmath.workprec(200):
        expected_lo = float(-mpmath.log(2))
    assert ref.settled and ref.precision == certify.START_PREC
    assert ref.pair == (d, expected_lo)
