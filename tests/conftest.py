"""Shared helpers: random values spread over a dtype's whole exponent range,
and skipping what needs a framework this installation lacks."""
from __future__ import annotations

import numpy as np
import pytest

from harness import adapters
from harness.model.dtypes import NUMPY_DTYPES as DTYPES
from reference.formats import FORMATS


def wide_values(rng: np.random.Generator, dtype: str, count: int) -> np.ndarray:
    """Floats of ``dtype`` (as float64) with random signs, significands and exponents
    from the subnormal range to near the top, so rounding paths all get exercised."""
    fmt = FORMATS[dtype]
    low, high = fmt.emin - fmt.precision + 1, fmt.emax - 2
    exponents = rng.integers(low, high, size=count)
    values = rng.choice([-1.0, 1.0], size=count) * rng.uniform(1.0, 2.0, size=count) * np.exp2(exponents.astype(float))
    return values.astype(DTYPES[dtype]).astype(np.float64)


@pytest.fixture(params=list(FORMATS))
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param


def need(framework: str) -> None:
    """Skip the calling test when ``framework`` is not available here."""
    try:
        adapters.load(framework)
    except adapters.FrameworkUnavailable as exc:
        pytest.skip(str(exc))
