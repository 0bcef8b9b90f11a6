"""Gradients through the adapters: NumPy's analytic gradients against torch
autograd (an independent computation) for every loss NumPy has one for, a
saturated case whose exact gradient is known, and refused requests."""
from __future__ import annotations

import numpy as np
import pytest

from harness import adapters, registry, regimes
from conftest import need

NUMPY = adapters.load("numpy")
WITH_GRADIENT = [name for name in registry.names() if NUMPY.gradient(registry.get(name), "stable") is not None]


def test_numpy_has_gradients_for_the_simple_losses() -> None:
    assert {"mse", "mae", "huber", "bce_logits", "cross_entropy"} <= set(WITH_GRADIENT)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", WITH_GRADIENT)
def test_numpy_gradient_matches_torch_autograd(loss: str, reduction: str) -> None:
    need("torch")
    torch_adapter = adapters.load("torch")
    spec = registry.get(loss)
    arrays = regimes.typical(spec, "float64", 200, seed=3)
    params = spec.resolve_params({})
    ours = NUMPY.run(spec, "stable", arrays, "float64", "cpu", reduction, params, gradient=True)
    (impl,) = torch_adapter.impl_names(loss)
    theirs = torch_adapter.run(spec, impl, arrays, "float64", "cpu", reduction, params, gradient=True)
    assert ours.result_dtype == theirs.result_dtype == "float64"
    np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-12, atol=1e-300)


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
    with pytest.raises(NotImplementedError, match="numpy naive has no gradient for mse"):
        NUMPY.run(spec, "naive", arrays, "float64", "cpu", "mean", {}, gradient=True)
