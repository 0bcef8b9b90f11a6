"""Exact conversion of binary floating-point arrays to mpmath numbers.

Every value of float16, bfloat16, float32 and float64 is a dyadic rational that
float64 holds exactly, and mpf holds any dyadic exactly, so the conversion loses
nothing: the reference is the loss of the very inputs the framework saw.
"""
from __future__ import annotations

from collections.abc import Iterable

import mpmath
import numpy as np
from mpmath.libmp import from_float


def to_mpf_list(values: np.ndarray | Iterable[float]) -> list[mpmath.mpf]:
    """Flattened exact mpf copies of a float array of any of the four formats."""
    as_float64 = np.asarray(values).astype(np.float64).ravel()
    make = mpmath.mp.make_mpf
    return [make(from_float(v)) for v in as_float64.tolist()]
