"""Metric-learning losses on pairs and triplets of embeddings."""
from harness.model.registry import define
from harness.model.spec import ArgSpec, Cancellation, Domain, Layout, ParamSpec

define(
    "contrastive", "embedding",
    "(l d^2 + (1 - l) max(0, margin - d)^2) / 2, d = |x1 - x2| per row; "
    "x1 = input, x2 = input2, l = target in {0, 1}",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.BINARY_LABEL, per_row=True),
     ArgSpec("input2", Domain.REAL)),
    params=(ParamSpec("margin", 1.0, minimum=0.0),),
    cancellation=Cancellation("input2", "input"),
)

_GEOMETRIC_REGIMES = ("typical", "wide", "near_overflow", "cancellation", "edge")

define(
    "cosine_similarity", "embedding", "-x.y / (|x| |y|) per row, x = input, y = target",
    Layout.ROWWISE, (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL)), regimes=_GEOMETRIC_REGIMES,
)
define(
    "triplet_margin", "embedding",
    "max(0, |a - p| - |a - n| + margin) per row, a = input (anchor), p = positive, n = negative",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("positive", Domain.REAL), ArgSpec("negative", Domain.REAL)),
    params=(ParamSpec("margin", 1.0, minimum=0.0),),
    regimes=_GEOMETRIC_REGIMES,
    cancellation=Cancellation("negative", "positive"),
)
