"""Weight penalties: one tensor, no target, summed (their canonical reduction)."""
from harness.model.registry import define
from harness.model.spec import ArgSpec, Domain, Layout

_WEIGHTS = (ArgSpec("input", Domain.REAL),)
# No target to be near, so no cancellation regime; no logits, so no saturation.
_WEIGHT_REGIMES = ("typical", "wide", "near_overflow", "edge")

define(
    "l2_penalty", "penalty", "sum w^2, w = input", Layout.ELEMENTWISE, _WEIGHTS,
    regimes=_WEIGHT_REGIMES, default_reduction="sum",
    cancellation=None,
)
define(
    "l1_penalty", "penalty", "sum |w|, w = input", Layout.ELEMENTWISE, _WEIGHTS,
    regimes=_WEIGHT_REGIMES, default_reduction="sum",
    cancellation=None,
)
