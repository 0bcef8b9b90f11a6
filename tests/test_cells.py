"""Every registered (loss, framework, impl, dtype) cell, generated from the
registry: it runs on a small typical input (or raises exactly where the adapter
declares the framework cannot run it), returns one value per item, and non-naive
implementations stay within a ULP bound unless the adapter declares why not.
Every failure message carries the command that reproduces it.

The bound is a few roundings (FLOAT64_BOUND, OTHER_BOUND) or, for losses that
are ill-conditioned on typical inputs (log v + d^2/v near 0, |a-p| - |a-n| + m),
a small multiple of what the best undeclared implementation achieves in the same
dtype on the same input: what one implementation shows is possible, the others
are held to.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness import adapters
from harness.adapters.base import INACCURATE
from harness.model import registry
from harness.measure import regimes
from harness.measure.evaluate import evaluate, repro_command
from harness.model.spec import DTYPES, Case

SIZE = 40
# A few roundings plus a 40-term reduction at float64; row sums of kl_div cancel,
# which costs up to ~12 ulp in the half formats, hence the looser bound there.
FLOAT64_BOUND = 8.0
OTHER_BOUND = 32.0
ACHIEVED_FACTOR = 4.0


def _frameworks() -> Iterator[tuple[str, adapters.Adapter | None, str]]:
    for framework in adapters.FRAMEWORKS:
        try:
            yield framework, adapters.load(framework), ""
        except adapters.FrameworkUnavailable as exc:
            yield framework, None, str(exc)


def _cells() -> Iterator[object]:
    """Every cell in the framework's default mode (eager, or PyTensor's compiled)."""
    for spec in registry.iter_losses():
        for framework, adapter, why in _frameworks():
            if adapter is None:
                yield pytest.param(spec.name, framework, "-", "-", "-", marks=pytest.mark.skip(reason=why),
                                   id=f"{spec.name}-{framework}")
                continue
            for impl in adapter.impl_names(spec.name):
                for dtype in DTYPES:
                    yield pytest.param(spec.name, framework, impl, dtype, adapter.modes[0],
                                       id=f"{spec.name}-{framework}-{impl}-{dtype}")


# Compiled cells in `make test`: every loss of JAX (jax.jit compiles in a fraction of a
# second) and a few of torch (inductor) and TensorFlow (XLA), in float32; `pytest -m slow`
# runs every compiled cell.
COMPILED_IN_MAKE_TEST = {"jax": None, "torch": ("mse", "cross_entropy", "bce_logits"),
                         "tensorflow": ("mse", "cross_entropy", "log_cosh")}


def _compiled_cells() -> Iterator[object]:
    for spec in registry.iter_losses():
        for framework, adapter, _ in _frameworks():
            if adapter is None or adapter.modes[0] == "compiled" or "compiled" not in adapter.modes:
                continue
            chosen = COMPILED_IN_MAKE_TEST.get(framework, ())
            for impl in adapter.impl_names(spec.name):
                for dtype in DTYPES:
                    quick = dtype == "float32" and (chosen is None or spec.name in chosen)
                    yield pytest.param(spec.name, framework, impl, dtype, "compiled",
                                       marks=() if quick else pytest.mark.slow,
                                       id=f"{spec.name}-{framework}-{impl}-{dtype}-compiled")


@dataclass(frozen=True)
class Measured:
    worst: float
    repro: str
    problems: tuple[str, ...]


@functools.cache
def _measure(loss: str, framework: str, impl: str, dtype: str, mode: str | None = None) -> Measured:
    spec = registry.get(loss)
    adapter = adapters.load(framework)
    arrays = regimes.typical(spec, dtype, SIZE, seed=3)
    params = tuple(spec.resolve_params({}).items())
    cannot_run = adapter.known_failure(loss, impl, dtype, "cpu", mode or adapter.modes[0])
    worst, worst_repro, problems = 0.0, "", []
    for reduction in sorted({spec.default_reduction, "none"}):
        case = Case(loss, framework, impl, dtype, "cpu", reduction, params, mode or adapter.modes[0])
        result = evaluate(case, arrays)
        repro = f"reproduce with: {repro_command(case, arrays)}"
        if cannot_run:
            if not result.error:
                problems.append(f"declared failure ({cannot_run}) did not happen; {repro}")
            continue
        expected_items = 1 if reduction != "none" else len(result.reference)
        if result.error:
            problems.append(f"{result.error}; {repro}")
        elif not all(r.settled for r in result.reference):
            problems.append(f"unsettled reference; {repro}")
        elif len(result.values) != expected_items:
            problems.append(f"{len(result.values)} values for {expected_items} items; {repro}")
        elif result.nonfinite != (None,) * expected_items:
            problems.append(f"{result.nonfinite}; {repro}")
        elif framework == "numpy" and result.result_dtype != dtype:  # no silent promotion in NumPy
            problems.append(f"returned {result.result_dtype}; {repro}")
        elif result.max_ulp >= worst:
            worst, worst_repro = result.max_ulp, repro
    return Measured(worst, worst_repro, tuple(problems))


def _judged(loss: str, framework: str, impl: str, dtype: str, mode: str | None = None) -> bool:
    """Held to the bound: not naive, runnable (in ``mode``, default the framework's
    own), and not declared inaccurate."""
    adapter = adapters.load(framework)
    mode = mode or adapter.modes[0]
    return (impl != "naive" and not adapter.known_failure(loss, impl, dtype, "cpu", mode)
            and not adapter.known_inaccuracy(loss, impl, dtype, mode))


@functools.cache
def _bound(loss: str, dtype: str) -> float:
    fixed = FLOAT64_BOUND if dtype == "float64" else OTHER_BOUND
    achieved = [_measure(loss, framework, impl, dtype).worst
                for framework, adapter, _ in _frameworks() if adapter is not None
                for impl in adapter.impl_names(loss) if _judged(loss, framework, impl, dtype)]
    return max(fixed, ACHIEVED_FACTOR * min(achieved, default=0.0))


@pytest.mark.parametrize("loss, framework, impl, dtype, mode", [*_cells(), *_compiled_cells()])
def test_cell(loss: str, framework: str, impl: str, dtype: str, mode: str) -> None:
    """The cell, in ``mode``, against the bound the default mode's best sets."""
    measured = _measure(loss, framework, impl, dtype, mode)
    assert not measured.problems, "\n".join(measured.problems)
    if _judged(loss, framework, impl, dtype, mode):
        bound = _bound(loss, dtype)
        assert measured.worst <= bound, f"max {measured.worst:.3g} ulp > {bound:.3g}; {measured.repro}"


def _declared() -> Iterator[object]:
    """Each declared inaccuracy of an impl, in its mode (none: the framework's own)."""
    for spec in registry.iter_losses():
        for framework, adapter, _ in _frameworks():
            for known in adapter.known if adapter else ():
                if known.kind != INACCURATE or known.loss != spec.name:
                    continue
                mode = known.mode or adapter.modes[0]
                for impl in adapter.impl_names(spec.name):
                    dtypes = [d for d in DTYPES if known.covers(spec.name, impl, d, None, mode)]
                    if dtypes:
                        yield pytest.param(spec.name, framework, impl, dtypes, mode,
                                           id=f"{spec.name}-{framework}-{impl}-{'-'.join(dtypes)}-{mode}")


@pytest.mark.parametrize("loss, framework, impl, dtypes, mode", list(_declared()))
def test_declared_inaccuracy_still_shows(loss: str, framework: str, impl: str, dtypes: list[str], mode: str) -> None:
    """A declaration that no longer holds in any of its dtypes must be removed."""
    worst = {d: _measure(loss, framework, impl, d, mode) for d in dtypes}
    assert any(m.worst > _bound(loss, d) for d, m in worst.items()), \
        f"declared: {adapters.load(framework).known_inaccuracy(loss, impl, dtypes[0], mode)}; " + \
        "; ".join(f"{d}: max {m.worst:.3g} ulp <= {_bound(loss, d):.3g}" for d, m in worst.items())


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
