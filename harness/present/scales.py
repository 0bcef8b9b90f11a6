"""What the report's colours, markers and accuracy bands mean, shared by the
overview page, the loss pages and their figures: one colour per framework and
one marker per dtype everywhere, accuracy in bands a reader can act on."""
from __future__ import annotations

from typing import Any

from harness.present.recommend import accuracy, choice_label
from reference.formats import get_format

Row = dict[str, Any]


def choice(row: Row) -> str:
    return choice_label(row["framework"], row["impl"], row["dtype"], row["mode"])


def worst_ulp(row: Row) -> float | None:
    """A cell's accuracy as recommend judges it (per-element or reduced, the worse)."""
    return accuracy(row, "ulp")


# Accuracy bands (upper bounds in ulp; the fourth is 2^(p/2) of the dtype) and their colours.
BANDS = ("correctly rounded (<= 0.5 ulp)", "faithful (<= 1)", "<= 4 ulp", "<= 2^(p/2) ulp: half the digits",
         "beyond: digits lost")
BAND_COLOURS = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027")
FRAMEWORK_COLOURS = {"numpy": "#1f77b4", "torch": "#d62728", "tensorflow": "#ff7f0e", "jax": "#2ca02c",
                     "pytensor": "#9467bd"}  # one colour per framework in every figure
DTYPE_MARKERS = {"float16": "v", "bfloat16": "^", "float32": "o", "float64": "s"}  # one marker per dtype


def band(ulp: float, dtype: str) -> int:
    """Index into BANDS of a worst ULP error in ``dtype``."""
    for index, bound in enumerate((0.5, 1.0, 4.0, 2.0 ** (get_format(dtype).precision / 2))):
        if ulp <= bound:
            return index
    return len(BANDS) - 1


# A gradient this many times worse (in ulp) than its forward value is listed and warned of.
WORSE_BACKWARD = 100


def backward_ratio(gradient: Row) -> float:
    """How many times the gradient's worst ULP error exceeds its forward value's (at least 1 ulp)."""
    return gradient["max_ulp"] / max(gradient["forward_max_ulp"], 1.0)


def far_worse_backward(gradient: Row) -> bool:
    return (gradient["status"] == "ok" and gradient["max_ulp"] is not None
            and gradient["forward_max_ulp"] is not None and backward_ratio(gradient) > WORSE_BACKWARD)
