"""The mp reference of the rational losses against exact Fraction arithmetic.

The oracle below is written independently of reference/formulas.py from the
definitions in DESIGN.md; ``float(Fraction)`` is correctly rounded in CPython,
so the float64 values must be identical, not merely close.
"""
from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from harness.model import registry
from harness.measure.evaluate import compute_reference
from harness.measure.regimes import in_dtype
from harness.model.spec import Domain, Layout
from reference.formats import round_mpf, round_rational, get_format

from conftest import wide_values

F = Fraction


def _hinge(s: F, y: F) -> F:
    return max(F(0), 1 - y * s)


def _multi_margin(row: list[F], t: int, margin: F) -> F:
    return sum((max(F(0), margin - row[t] + s) for j, s in enumerate(row) if j != t), F(0)) / len(row)


def _categorical_hinge(row: list[F], t: int) -> F:
    return max(F(0), 1 + max(s for j, s in enumerate(row) if j != t) - row[t])


def _huber(x: F, y: F, delta: F) -> F:
    d = abs(x - y)
    return d * d / 2 if d <= delta else delta * (d - delta / 2)


def _smooth_l1(x: F, y: F, beta: F) -> F:
    d = abs(x - y)
    return d * d / (2 * beta) if d < beta else d - beta / 2


ORACLES: dict[str, Callable[..., F]] = {
    "margin_ranking": lambda x1, y, x2, margin: max(F(0), -y * (x1 - x2) + margin),
    "l2_penalty": lambda w: w * w,
    "l1_penalty": lambda w: abs(w),
    "mse": lambda x, y: (x - y) ** 2,
    "mae": lambda x, y: abs(x - y),
    "huber": _huber,
    "smooth_l1": _smooth_l1,
    "hinge": _hinge,
    "squared_hinge": lambda s, y: _hinge(s, y) ** 2,
    "multi_margin": _multi_margin,
    "categorical_hinge": _categorical_hinge,
}
# Non-default parameters too, so that they really reach the reference; smooth_l1's
# beta 2.5 takes the rounding path, the powers of two the exact one.
PARAMS = {"huber": [{"delta": 0.375}] * 3, "smooth_l1": [{"beta": 2.5}, {"beta": 0.5}, {"beta": 1.0}],
          "multi_margin": [{"margin": 0.75}] * 3, "margin_ranking": [{"margin": 0.0}, {"margin": 0.625}, {"margin": -3.0}]}


def _inputs(loss: str, dtype: str, seed: int) -> dict[str, np.ndarray]:
    """Arrays for every argument of ``loss``: wide values, a few of the second real
    argument within 2**-9 of the first (near-cancellation), labels and class indices."""
    rng = np.random.default_rng(seed)
    spec = registry.get(loss)
    if spec.layout is Layout.ROWWISE:
        rows, width = 4, 5
        # Moderate magnitudes so that margins are active, plus a few wide values.
        scores = rng.standard_normal((rows, width)).astype(np.float32).astype(np.float64)
        scores[0] = wide_values(rng, dtype, width) if dtype != "float64" else scores[0] * 1e-300
        return {"input": in_dtype(scores, dtype), "target": rng.integers(0, width, size=rows)}
    arrays: dict[str, np.ndarray] = {}
    for arg in spec.args:
        if arg.domain is Domain.SIGN_LABEL:
            arrays[arg.name] = rng.choice([-1.0, 1.0], size=12)
        elif "input" in arrays:
            near = arrays["input"][:4] * (1 + 2.0**-9)
            arrays[arg.name] = in_dtype(np.concatenate([near, wide_values(rng, dtype, 8)]), dtype)
        else:
            arrays[arg.name] = wide_values(rng, dtype, 12)
    return arrays


# IEEE-754: a float64 rounds to infinity from 2**1024 - 2**970 up (max + half ulp).
FLOAT64_OVERFLOW = F(2**1024 - 2**970)


def _to_float64(q: F) -> float:
    """Correctly rounded float64 of q: CPython's int / int division, with overflow as IEEE has it."""
    if abs(q) >= FLOAT64_OVERFLOW:
        return float("inf") if q > 0 else float("-inf")
    return float(q)


def oracle(loss: str, arrays: dict[str, np.ndarray], params: dict[str, float], reduction: str) -> list[F]:
    spec = registry.get(loss)
    exact = ORACLES[loss]
    p = {k: F(v) for k, v in params.items()}
    if spec.layout is Layout.ELEMENTWISE:
        columns = [[F(v) if a.domain.is_float else int(v) for v in arrays[a.name]] for a in spec.args]
        items = [exact(*item, **p) for item in zip(*columns)]
    else:
        items = [exact([F(v) for v in row], int(t), **p) for row, t in zip(arrays["input"], arrays["target"])]
    if reduction == "none":
        return items
    total = sum(items, F(0))
    return [total / len(items) if reduction == "mean" else total]


@pytest.mark.parametrize("loss", sorted(ORACLES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("seed", range(3))
def test_reference_equals_exact_fraction(loss: str, dtype: str, reduction: str, seed: int) -> None:
    arrays = _inputs(loss, dtype, seed)
    params = registry.get(loss).resolve_params(PARAMS[loss][seed] if loss in PARAMS else {})
    refs = compute_reference(registry.get(loss), arrays, params, reduction)
    exact = oracle(loss, arrays, params, reduction)
    assert all(r.settled for r in refs)
    assert [round_mpf(r.value, "float64") for r in refs] == [_to_float64(q) for q in exact]
    fmt = get_format(dtype)
    assert [round_mpf(r.value, dtype) for r in refs] == [round_rational(q, fmt) for q in exact]


def test_every_rational_loss_with_oracle_is_registered() -> None:
    assert set(ORACLES) <= set(registry.names())
