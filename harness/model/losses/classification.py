"""Probabilistic classification losses: binary, categorical and divergence."""
from reference import derivatives as grad
from reference import formulas as mp

from harness.model.registry import register
from harness.model.spec import ArgSpec, Cancellation, Domain, Layout, LossSpec, ParamSpec

_CLASS_SCORE = Cancellation("input", "target", "class_score")  # every score onto the target's

_CLASS_TARGET = ArgSpec("target", Domain.CLASS_INDEX, per_row=True)
# Losses of probabilities only: no intermediate can overflow, so no near_overflow regime.
_PROBABILITY_REGIMES = ("typical", "wide", "saturated", "cancellation", "edge")

register(LossSpec(
    "bce", "classification", "-(y log p + (1 - y) log(1 - p)), p = input",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.PROBABILITY), ArgSpec("target", Domain.PROBABILITY)),
    mp.bce, grad.bce,
    regimes=_PROBABILITY_REGIMES,
))
register(LossSpec(
    "bce_logits", "classification", "bce(sigmoid(z), y), z = input (logits), exact",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.PROBABILITY)),
    mp.bce_logits, grad.bce_logits,
    cancellation=None,
))
register(LossSpec(
    "cross_entropy", "classification", "logsumexp(z) - z_t, z = input row (logits), t = target class",
    Layout.ROWWISE, (ArgSpec("input", Domain.REAL), _CLASS_TARGET), mp.cross_entropy, grad.cross_entropy,
    cancellation=_CLASS_SCORE,
))
register(LossSpec(
    "soft_cross_entropy", "classification", "sum_c q_c (logsumexp(z) - z_c), q = target row",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.DISTRIBUTION)),
    mp.soft_cross_entropy, grad.soft_cross_entropy,
    cancellation=None,
))
register(LossSpec(
    "nll", "classification", "-l_t, l = input row (log-probabilities)",
    Layout.ROWWISE, (ArgSpec("input", Domain.REAL), _CLASS_TARGET), mp.nll, grad.nll,
    cancellation=_CLASS_SCORE,
))
register(LossSpec(
    "kl_div", "classification", "sum_c p_c log(p_c / q_c), q = input row, p = target row; batch mean",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.DISTRIBUTION), ArgSpec("target", Domain.DISTRIBUTION)),
    mp.kl_div, grad.kl_div,
    regimes=_PROBABILITY_REGIMES,
))
register(LossSpec(
    "categorical_ce", "classification", "-sum_c q_c log p_c, p = input row (probabilities), q = target row",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.DISTRIBUTION), ArgSpec("target", Domain.DISTRIBUTION)),
    mp.categorical_ce, grad.categorical_ce,
    regimes=_PROBABILITY_REGIMES,
))
register(LossSpec(
    "focal", "classification",
    "-(1 - p_t)^gamma log p_t, p_t = sigmoid(z) for label 1, 1 - sigmoid(z) for label 0; z = input (logits)",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.BINARY_LABEL)),
    mp.focal, grad.focal,
    params=(ParamSpec("gamma", 2.0, minimum=0.0),),
    regimes=("typical", "wide", "saturated", "near_overflow", "edge"),
    cancellation=None,
))
