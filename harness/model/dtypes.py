"""The floating-point dtypes every layer speaks of, by name, and their NumPy types
(bfloat16 through ml_dtypes): inputs are generated and read back in these."""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
NUMPY_DTYPES: dict[str, Any] = {
    "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64,
}
