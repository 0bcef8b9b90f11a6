"""Shared set references: equal to the single-case reference computed
independently, unchanged by chunking, deterministic, and cached faithfully."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from harness.measure import refsets
from harness.model import registry
from harness.measure.evaluate import compute_reference
from harness.measure.items import reference_items, with_params
from harness.measure.quantity import VALUE, LossGradient
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import InputSet
from reference import gradients, prepass
from reference.arith import ENGINES
from reference.certify import PREPASS_PRECISION, RELATIVE_BITS
from reference.formats import round_mpf

SIZES = (10, 100, 300)
SETS = [
    InputSet("mse", (), "float32", "wide", 0, 1),
    InputSet("bce_logits", (), "float16", "edge", 1, 1),
    InputSet("cross_entropy", (), "bfloat16", "typical", 0, 10),
    InputSet("kl_div", (), "float64", "cancellation", 0, 10),
    InputSet("huber", (("delta", 0.5),), "float32", "near_overflow", 2, 1),
]


@pytest.mark.parametrize("inputset", SETS, ids=[f"{s.loss}-{s.regime}" for s in SETS])
def test_matches_independent_single_case_reference(inputset: InputSet) -> None:
    ref = VALUE.compute(inputset, SIZES)
    spec = registry.get(inputset.loss)
    for size in SIZES:
        arrays = inputset.inputs(size)
        items = compute_reference(spec, arrays, dict(inputset.params), "none")
        n = len(items)
        _same_values(ref.items[:n], items, inputset.dtype)
        assert ref.items.settled[:n].tolist() == [r.settled for r in items]
        for reduction in ("mean", "sum"):
            (direct,) = compute_reference(spec, arrays, dict(inputset.params), reduction)
            shared = ref.reduced[(size, reduction)]
            _same_values(shared, [direct], inputset.dtype)
            assert bool(shared.settled[0]) == direct.settled


def _same_values(shared: refsets.RefArrays, direct: list, dtype: str) -> None:
    """The same correct roundings; the same float64 value, but for items the float64
    pre-pass settled (precision 53), whose value lies within its narrow enclosure."""
    assert np.array_equal(shared.rounded, [round_mpf(r.value, dtype) for r in direct], equal_nan=True)
    prepassed = shared.precision == PREPASS_PRECISION
    exact = np.array([round_mpf(r.value, "float64") for r in direct])
    assert np.array_equal(shared.hi[~prepassed], exact[~prepassed], equal_nan=True)
    for hi, r in zip(shared.hi[prepassed], [r for r, p in zip(direct, prepassed) if p]):
        assert abs(mpmath.mpf(hi) - r.value) <= abs(r.value) * mpmath.mpf(2) ** -RELATIVE_BITS


def test_hi_lo_pairs_hold_the_exact_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a ball settled the items (the pre-pass turned off) the pair is the value."""
    monkeypatch.setattr(prepass, "FORMULAS", {})
    inputset = SETS[2]
    ref = VALUE.compute(inputset, SIZES)
    items = compute_reference(registry.get(inputset.loss), inputset.inputs(300), {}, "none")
    for i, r in enumerate(items):
        with mpmath.workprec(400):
            residual = r.value - mpmath.mpf(ref.items.hi[i]) - mpmath.mpf(ref.items.lo[i])
            assert abs(residual) <= abs(r.value) * mpmath.mpf(2) ** -104


@pytest.mark.parametrize("inputset", [SETS[2], SETS[3]], ids=["prepass", "balls"])
def test_chunking_does_not_change_anything(inputset: InputSet, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = VALUE.compute(inputset, SIZES)
    monkeypatch.setattr(refsets, "CHUNK", 7)  # many chunks, boundaries inside chunks
    chunked = VALUE.compute(inputset, SIZES)
    for field in ("hi", "lo", "rounded", "settled", "precision"):
        assert np.array_equal(getattr(whole.items, field), getattr(chunked.items, field), equal_nan=True)
    for key in whole.reduced:
        assert np.array_equal(whole.reduced[key].hi, chunked.reduced[key].hi, equal_nan=True)


def test_deterministic_and_cache_round_trip(tmp_path) -> None:
    inputset = SETS[1]
    first, second = VALUE.compute(inputset, SIZES), VALUE.compute(inputset, SIZES)
    assert first.items.hi.tobytes() == second.items.hi.tobytes()
    cache = ReferenceCache(tmp_path)
    assert not cache.has(inputset, SIZES, VALUE)
    cache.save(inputset, VALUE, first)
    assert cache.has(inputset, SIZES, VALUE) and cache.has(inputset, SIZES[:1], VALUE)
    assert not cache.has(inputset, (*SIZES, 1000), VALUE)
    loaded = cache.read(cache.path(inputset, VALUE), VALUE, inputset.key(VALUE))
    for field in ("hi", "lo", "rounded", "settled", "precision"):
        assert np.array_equal(getattr(first.items, field), getattr(loaded.items, field), equal_nan=True)
    assert set(loaded.reduced) == set(first.reduced)
    assert not list(tmp_path.glob("*.tmp.npz"))


def test_key_depends_on_content() -> None:
    base = InputSet("huber", (("delta", 1.0),), "float32", "typical", 0, 1)
    variants = [InputSet("huber", (("delta", 0.5),), "float32", "typical", 0, 1),
                InputSet("huber", (("delta", 1.0),), "float16", "typical", 0, 1),
                InputSet("huber", (("delta", 1.0),), "float32", "wide", 0, 1),
                InputSet("huber", (("delta", 1.0),), "float32", "typical", 1, 1)]
    assert len({base.key(VALUE), *(v.key(VALUE) for v in variants)}) == 5
    assert len({base.key(VALUE), base.key(LossGradient("mean")), base.key(LossGradient("sum"))}) == 3


GRADIENT_SETS = [
    (InputSet("cross_entropy", (), "float32", "typical", 0, 10), "mean"),
    (InputSet("mae", (), "float16", "edge", 0, 1), "mean"),  # infinities and corners (d = 0) have no derivative
    (InputSet("l1_penalty", (), "bfloat16", "edge", 0, 1), "sum"),
]


@pytest.mark.parametrize(("inputset", "reduction"), GRADIENT_SETS, ids=[s.loss for s, _ in GRADIENT_SETS])
def test_set_gradient_matches_the_single_case_gradient(inputset: InputSet, reduction: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks that straddle the sizes' boundaries, items shared by every size and
    divided by each size's own count: the same as each size's gradient evaluated alone."""
    monkeypatch.setattr(refsets, "CHUNK", 7)
    grads = LossGradient(reduction).compute(inputset, SIZES)
    spec = registry.get(inputset.loss)
    derivative = with_params(spec.derivative, dict(inputset.params))
    for size in SIZES:
        direct = gradients.evaluate(derivative, reference_items(spec, inputset.inputs(size)), reduction,
                                    ENGINES["flint"])
        shared = grads[size]
        assert shared.defined.tolist() == [r.value is not None for r in direct]
        expected = np.array([r.pair[0] if r.value is not None else np.nan for r in direct])
        prepassed = shared.ref.precision == PREPASS_PRECISION  # the float64 value, proven close enough
        assert np.array_equal(shared.ref.hi[~prepassed], expected[~prepassed], equal_nan=True), size
        assert np.all(np.abs(shared.ref.hi[prepassed] - expected[prepassed])
                      <= np.abs(expected[prepassed]) * 2.0**-RELATIVE_BITS), size
        assert shared.ref.settled.tolist() == [r.settled for r in direct]
    if inputset.loss == "mae":
        assert not grads[SIZES[-1]].defined.all()
