"""Every registered (loss, framework, impl, dtype) cell, generated from the
registry: it runs on a small typical input (or raises exactly where the adapter
declares the framework cannot run it), returns one value per item, and non-naive
implementations stay within a small ULP bound unless the adapter declares why not.
Every failure message carries the command that reproduces it."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import adapters, registry, regimes
from harness.evaluate import evaluate, repro_command
from harness.spec import DTYPES, Case

SIZE = 40
# Max ULP error allowed for stable / native / composed cells on typical inputs:
# a few roundings plus a 40-term reduction at float64; row sums of kl_div cancel,
# which costs up to ~12 ulp in the half formats, hence the looser bound there.
FLOAT64_BOUND = 8.0
OTHER_BOUND = 32.0


def _cells() -> Iterator[object]:
    for spec in registry.iter_losses():
        for framework in adapters.FRAMEWORKS:
            try:
                adapter = adapters.load(framework)
            except adapters.FrameworkUnavailable as exc:
                yield pytest.param(spec.name, framework, "-", "-", marks=pytest.mark.skip(reason=str(exc)),
                                   id=f"{spec.name}-{framework}")
                continue
            for impl in adapter.impl_names(spec.name):
                for dtype in DTYPES:
                    yield pytest.param(spec.name, framework, impl, dtype, id=f"{spec.name}-{framework}-{impl}-{dtype}")


@pytest.mark.parametrize("loss, framework, impl, dtype", list(_cells()))
def test_cell(loss: str, framework: str, impl: str, dtype: str) -> None:
    spec = registry.get(loss)
    adapter = adapters.load(framework)
    arrays = regimes.typical(spec, dtype, SIZE, seed=3)
    params = tuple(spec.resolve_params({}).items())
    cannot_run = adapter.known_failure(loss, impl, dtype, "cpu")
    worst, worst_repro = 0.0, ""
    for reduction in ("mean", "none"):
        case = Case(loss, framework, impl, dtype, "cpu", reduction, params)
        result = evaluate(case, arrays)
        repro = f"reproduce with: {repro_command(case, arrays)}"
        if cannot_run:
            assert result.error, f"declared failure ({cannot_run}) did not happen; {repro}"
            continue
        assert result.error is None, f"{result.error}; {repro}"
        assert all(r.settled for r in result.reference), repro
        expected_items = 1 if reduction == "mean" else len(result.reference)
        assert len(result.values) == expected_items, repro
        assert result.nonfinite == (None,) * expected_items, f"{result.nonfinite}; {repro}"
        if framework == "numpy":  # NumPy computes in the dtype asked for (no silent promotion)
            assert result.result_dtype == dtype, f"returned {result.result_dtype}; {repro}"
        if result.max_ulp >= worst:
            worst, worst_repro = result.max_ulp, repro
    if cannot_run or impl == "naive":
        return
    bound = FLOAT64_BOUND if dtype == "float64" else OTHER_BOUND
    inaccurate = adapter.known_inaccuracy(loss, impl, dtype)
    if inaccurate:
        assert worst > bound, f"declared inaccuracy ({inaccurate}) no longer shows; {worst_repro}"
    else:
        assert worst <= bound, f"max {worst:.3g} ulp > {bound}; {worst_repro}"


def test_numpy_returns_the_requested_dtype_and_keras_upcasts_half() -> None:
    spec = registry.get("mse")
    arrays = regimes.typical(spec, "float16", SIZE)
    numpy_result = evaluate(Case("mse", "numpy", "stable", "float16"), arrays)
    assert numpy_result.result_dtype == "float16"
    try:
        adapters.load("tensorflow")
    except adapters.FrameworkUnavailable as exc:
        pytest.skip(str(exc))
    # Keras computes losses in floatx (float32) unless the loss is given a dtype.
    keras_result = evaluate(Case("mse", "tensorflow", "native", "float16"), arrays)
    assert keras_result.result_dtype == "float32"
