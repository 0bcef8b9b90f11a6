"""Seeded input generators. Values are drawn, then put into the target dtype,
so every generated value is exactly representable there; the same seed gives
bit-identical inputs on every machine."""
from __future__ import annotations

import numpy as np

from harness.adapters.numpy_adapter import DTYPES
from harness.spec import ArgSpec, Domain, Layout, LossSpec

DEFAULT_WIDTH = 10  # classes / features per row for row-wise losses


def _in_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    return values.astype(DTYPES[dtype]).astype(np.float64)


def _typical_arg(arg: ArgSpec, shape: tuple[int, ...], rng: np.random.Generator, dtype: str) -> np.ndarray:
    rows = shape[0]
    if arg.domain is Domain.CLASS_INDEX:
        return rng.integers(0, shape[1], size=rows)
    count = (rows,) if arg.per_row else shape
    if arg.domain is Domain.REAL:
        return _in_dtype(rng.standard_normal(count), dtype)
    if arg.domain is Domain.PROBABILITY:
        return _in_dtype(rng.uniform(0.0, 1.0, count), dtype)
    if arg.domain is Domain.DISTRIBUTION:
        weights = rng.uniform(0.05, 1.0, count)
        return _in_dtype(weights / weights.sum(axis=-1, keepdims=True), dtype)
    if arg.domain is Domain.SIGN_LABEL:
        return rng.choice([-1.0, 1.0], size=count)
    return rng.choice([0.0, 1.0], size=count)


def typical(spec: LossSpec, dtype: str, size: int, seed: int = 0, width: int = DEFAULT_WIDTH) -> dict[str, np.ndarray]:
    """Standard-normal reals, uniform probabilities, random labels; ``size`` is the
    total number of input elements (rounded down to whole rows of ``width``)."""
    rng = np.random.default_rng([seed, size, sum(map(ord, spec.name))])
    shape = (size,) if spec.layout is Layout.ELEMENTWISE else (max(size // width, 1), width)
    return {a.name: _typical_arg(a, shape, rng, dtype) for a in spec.args}
