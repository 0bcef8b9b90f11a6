"""Regime generators: inside each loss's domain and dtype, deterministic, and
prefix-consistent across sizes (which the shared references rely on)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.model import registry
from harness.measure import regimes
from harness.model.dtypes import NUMPY_DTYPES as DTYPES
from harness.measure.inputs import validate
from harness.model.spec import Domain
from reference.formats import FORMATS

CASES = [(spec.name, regime) for spec in registry.iter_losses() for regime in spec.regimes]


@pytest.mark.parametrize("loss, regime", CASES, ids=[f"{l}-{r}" for l, r in CASES])
def test_inputs_stay_in_domain_and_dtype(loss: str, regime: str, dtype: str) -> None:
    spec = registry.get(loss)
    arrays = regimes.generate(spec, dtype, regime, seed=5, size=600)
    validate(spec, arrays)  # the same checks user input gets
    assert arrays["input"].shape[0] == regimes.items_for(spec, 600, regimes.DEFAULT_WIDTH)
    for arg in spec.args:
        values = arrays[arg.name]
        if arg.domain.is_float:
            with np.errstate(over="ignore"):
                again = values.astype(DTYPES[dtype]).astype(np.float64)
            assert np.array_equal(again, values, equal_nan=True), f"{arg.name} not representable in {dtype}"


@pytest.mark.parametrize("loss, regime", CASES, ids=[f"{l}-{r}" for l, r in CASES])
def test_same_seed_same_bytes_and_prefixes(loss: str, regime: str) -> None:
    spec = registry.get(loss)
    big = regimes.generate(spec, "bfloat16", regime, seed=3, size=2000)
    again = regimes.generate(spec, "bfloat16", regime, seed=3, size=2000)
    small = regimes.generate(spec, "bfloat16", regime, seed=3, size=300)
    middle = regimes.generate_items(spec, "bfloat16", regime, 3, 17, 150, regimes.DEFAULT_WIDTH)
    other = regimes.generate(spec, "bfloat16", regime, seed=4, size=2000)
    for name in big:
        assert big[name].tobytes() == again[name].tobytes()
        assert small[name].tobytes() == big[name][:len(small[name])].tobytes()
        assert middle[name].tobytes() == big[name][17:150].tobytes()
    assert any(big[n].tobytes() != other[n].tobytes() for n in big), "another seed gives another input"


def _ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of float32 steps between same-signed float32 values."""
    return np.abs(a.astype(np.float32).view(np.int32).astype(np.int64) - b.astype(np.float32).view(np.int32))


def test_regime_definitions() -> None:
    mse, bce, ce = registry.get("mse"), registry.get("bce"), registry.get("cross_entropy")
    near = regimes.generate(mse, "float32", "cancellation", 0, 1000)
    steps = _ulps_apart(near["input"], near["target"])
    assert steps.min() >= 1 and steps.max() <= 4
    saturated = regimes.generate(mse, "float32", "saturated", 0, 1000)["input"]
    assert np.all((np.abs(saturated) >= 9.99) & (np.abs(saturated) <= 1.001e4))
    probabilities = regimes.generate(bce, "float16", "saturated", 0, 1000)["input"]
    assert np.all(np.minimum(probabilities, 1 - probabilities) <= 1e-3 + 2.0**-11)
    top = float(FORMATS["float16"].max_finite)
    logits = regimes.generate(ce, "float16", "near_overflow", 0, 1000)["input"]
    assert np.all((np.abs(logits) >= 2 * math.log(top) * 0.999) & (np.abs(logits) <= math.sqrt(top) / 2 * 1.001))
    edge = regimes.generate(mse, "float16", "edge", 0, 1000)["input"]
    specials = {0.0, 1.0, -1.0, math.inf, -math.inf, top, -top, 2.0**-14, -(2.0**-14), 2.0**-24, -(2.0**-24)}
    assert set(edge[~np.isnan(edge)].tolist()) <= specials and np.isnan(edge).any()
    wide = regimes.generate(mse, "float32", "wide", 0, 5000)["input"]
    magnitudes = np.log2(np.abs(wide[wide != 0]))
    assert magnitudes.min() < -120 and magnitudes.max() > 120  # spans the exponent range


def test_unknown_regime_for_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="does not use regime"):
        regimes.generate(registry.get("bce"), "float32", "near_overflow", 0, 10)


def test_labels_and_indices_come_from_their_sets() -> None:
    hinge = regimes.generate(registry.get("hinge"), "float32", "wide", 0, 500)
    assert set(hinge["target"].tolist()) == {-1.0, 1.0}
    contrastive = regimes.generate(registry.get("contrastive"), "float32", "edge", 0, 500)
    assert set(contrastive["target"].tolist()) <= {0.0, 1.0}
    ce = regimes.generate(registry.get("cross_entropy"), "float32", "typical", 0, 500)
    assert ce["target"].min() >= 0 and ce["target"].max() < ce["input"].shape[1]
    assert registry.get("hinge").arg("target").domain is Domain.SIGN_LABEL


def test_cancellation_of_the_further_losses() -> None:
    triplet = regimes.generate(registry.get("triplet_margin"), "float32", "cancellation", 0, 1000)
    steps = _ulps_apart(triplet["negative"], triplet["positive"])
    assert steps.min() >= 1 and steps.max() <= 4  # |a - n| within a few ulps of |a - p|
    poisson = regimes.generate(registry.get("poisson_nll"), "float16", "cancellation", 0, 1000)
    assert np.all(poisson["input"] > 0)  # a rate nudged below its smallest value stays positive
    near = poisson["target"] > 2.0**-14  # normal targets: the nudge is 1 to 4 float16 steps
    ratio = np.abs(poisson["input"][near] / poisson["target"][near] - 1)
    assert np.all((ratio > 0) & (ratio <= 4 * 2.0**-10))


def test_positive_arguments_never_reach_zero() -> None:
    for regime in registry.get("gaussian_nll").regimes:
        var = regimes.generate(registry.get("gaussian_nll"), "float16", regime, 0, 2000)["var"]
        assert np.all(var[~np.isnan(var)] > 0), regime
    edge = regimes.generate(registry.get("msle"), "bfloat16", "edge", 0, 500)["input"]
    assert 0.0 in edge.tolist() and np.nanmin(edge) >= 0  # non-negative edges include 0
