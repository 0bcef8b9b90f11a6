"""Numbers as the JSON and text outputs write them: non-finite values as strings,
references in decimal."""
from __future__ import annotations

import math

import mpmath
import numpy as np


def jsonable(array: np.ndarray) -> list:
    """An input array as the JSON the CLI reads: nested lists, non-finite values as strings."""
    if array.dtype.kind == "i":
        return array.tolist()
    return [json_number(v) for v in array.ravel().tolist()] if array.ndim == 1 else [jsonable(row) for row in array]


def json_number(value: float | None) -> float | str | None:
    """A float as JSON has it: "nan", "inf" and "-inf" as strings (None stays None)."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def reference_decimal(value: mpmath.mpf, digits: int = 30) -> str:
    """A reference value in decimal (``digits`` significant), or inf / -inf / nan."""
    if not mpmath.isfinite(value):
        return str(json_number(float(value)))
    return mpmath.nstr(value, digits, strip_zeros=False, min_fixed=-5, max_fixed=digits)
