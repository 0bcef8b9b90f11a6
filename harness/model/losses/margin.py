"""Margin (hinge-type) losses on scores."""
from harness.model.registry import define
from harness.model.spec import ArgSpec, Cancellation, Domain, Layout, ParamSpec

_CLASS_SCORE = Cancellation("input", "target", "class_score")  # every score onto the target's
_SIGN_MARGIN = Cancellation("input", "target", "sign_margin")  # y * s onto 1

_SIGNED = (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.SIGN_LABEL))
_CLASS_SCORES = (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.CLASS_INDEX, per_row=True))

define("hinge", "margin", "max(0, 1 - y s), y in {-1, +1}", Layout.ELEMENTWISE, _SIGNED, cancellation=_SIGN_MARGIN)
define(
    "squared_hinge", "margin", "max(0, 1 - y s)^2, y in {-1, +1}", Layout.ELEMENTWISE, _SIGNED,
    cancellation=_SIGN_MARGIN,
)
define(
    "multi_margin", "margin", "sum_{j != t} max(0, margin - s_t + s_j) / C",
    Layout.ROWWISE, _CLASS_SCORES,
    params=(ParamSpec("margin", 1.0),),
    cancellation=_CLASS_SCORE,
)
define(
    "categorical_hinge", "margin", "max(0, 1 + max_{j != t} s_j - s_t)",
    Layout.ROWWISE, _CLASS_SCORES,
    cancellation=_CLASS_SCORE,
)
define(
    "soft_margin", "margin", "log(1 + exp(-y s)), y in {-1, +1}", Layout.ELEMENTWISE, _SIGNED,
    cancellation=_SIGN_MARGIN,
)
define(
    "margin_ranking", "margin", "max(0, -y (x1 - x2) + margin), x1 = input, x2 = input2, y = target in {-1, +1}",
    Layout.ELEMENTWISE, (*_SIGNED, ArgSpec("input2", Domain.REAL)),
    params=(ParamSpec("margin", 0.0),),
    regimes=("typical", "wide", "near_overflow", "cancellation", "edge"),
    cancellation=Cancellation("input2", "input"),
)
