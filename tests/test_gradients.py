"""Gradients through the adapters: NumPy's analytic gradients against the mp
reference derivative for every loss and impl NumPy has one for, a saturated
case whose exact gradient is known in every framework, and refused requests."""
from __future__ import annotations

import numpy as np
import pytest

from harness import adapters
from harness.model import registry
from harness.measure import regimes
from harness.measure.evaluate import evaluate_gradient
from harness.model.spec import Case
from conftest import need

NUMPY = adapters.load("numpy")
WITH_GRADIENT = [(name, impl) for name in registry.names() for impl in NUMPY.impl_names(name)
                 if NUMPY.gradient(registry.get(name), impl) is not None]


def test_numpy_stable_has_a_gradient_for_every_loss() -> None:
    assert {name for name, impl in WITH_GRADIENT if impl == "stable"} == set(registry.names())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("loss", "impl"), WITH_GRADIENT)
def test_numpy_gradient_matches_the_reference_derivative(loss: str, impl: str, reduction: str) -> None:
    """On typical float64 inputs every analytic gradient is within 1e-12 of the
    largest component (formula mistakes are O(1); cancellation in a naive formula
    stays far below this on typical inputs)."""
    spec = registry.get(loss)
    arrays = regimes.typical(spec, "float64", 60, seed=3)
    params = tuple(spec.resolve_params({}).items())
    result = evaluate_gradient(Case(loss, "numpy", impl, "float64", reduction=reduction, params=params), arrays)
    assert result.error is None and result.result_dtype == "float64"
    defined = [r.value is not None for r in result.reference]
    assert sum(defined) > len(defined) // 2
    ours = np.array(result.values)[defined]
    exact = np.array([float(r.value) for r in result.reference if r.value is not None])
    np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=1e-12 * np.abs(exact).max())


@pytest.mark.parametrize("framework", list(adapters.FRAMEWORKS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saturated_bce_logits_gradient_is_exactly_minus_one(framework: str, dtype: str) -> None:
    """d/dz softplus(-z) = -(1 - sigmoid(z)); at z = -1000, 1 - sigmoid(z) = 1 - e^-1000 rounds to 1."""
    need(framework)
    adapter = adapters.load(framework)
    spec = registry.get("bce_logits")
    impl = "stable" if framework == "numpy" else adapter.impl_names("bce_logits")[0]
    arrays = {"input": np.array([-1000.0]), "target": np.array([1.0])}
    grad = adapter.run(spec, impl, arrays, dtype, "cpu", "sum", {}, gradient=True)
    assert grad.values.tolist() == [-1.0]


def test_gradient_of_unreduced_loss_and_missing_gradient_are_refused() -> None:
    spec = registry.get("mse")
    arrays = {"input": np.array([1.0]), "target": np.array([0.0])}
    with pytest.raises(ValueError, match="reduction must be mean or sum"):
        NUMPY.run(spec, "stable", arrays, "float64", "cpu", "none", {}, gradient=True)
    focal = registry.get("focal")
    with pytest.raises(NotImplementedError, match="numpy naive has no gradient for focal"):
        NUMPY.run(focal, "naive", arrays, "float64", "cpu", "mean", {"gamma": 2.0}, gradient=True)
