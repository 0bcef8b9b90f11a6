"""Weight penalties: one tensor, no target, summed (their canonical reduction)."""
from reference import derivatives as grad
from reference import formulas as mp

from harness.model.registry import register
from harness.model.spec import ArgSpec, Domain, Layout, LossSpec

_WEIGHTS = (ArgSpec("input", Domain.REAL),)
# No target to be near, so no cancellation regime; no logits, so no saturation.
_WEIGHT_REGIMES = ("typical", "wide", "near_overflow", "edge")

register(LossSpec(
    "l2_penalty", "penalty", "sum w^2, w = input", Layout.ELEMENTWISE, _WEIGHTS, mp.l2_penalty, grad.l2_penalty,
    regimes=_WEIGHT_REGIMES, default_reduction="sum",
    cancellation=None,
))
register(LossSpec(
    "l1_penalty", "penalty", "sum |w|, w = input", Layout.ELEMENTWISE, _WEIGHTS, mp.l1_penalty, grad.l1_penalty,
    regimes=_WEIGHT_REGIMES, default_reduction="sum",
    cancellation=None,
))
