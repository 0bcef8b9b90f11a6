"""Probabilistic classification losses: binary, categorical and divergence."""
from harness.model.registry import define
from harness.model.spec import ArgSpec, Cancellation, Domain, Layout, ParamSpec

_CLASS_SCORE = Cancellation("input", "target", "class_score")  # every score onto the target's

_CLASS_TARGET = ArgSpec("target", Domain.CLASS_INDEX, per_row=True)
# Losses of probabilities only: no intermediate can overflow, so no near_overflow regime.
_PROBABILITY_REGIMES = ("typical", "wide", "saturated", "cancellation", "edge")

define(
    "bce", "classification", "-(y log p + (1 - y) log(1 - p)), p = input",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.PROBABILITY), ArgSpec("target", Domain.PROBABILITY)),
    regimes=_PROBABILITY_REGIMES,
)
define(
    "bce_logits", "classification", "bce(sigmoid(z), y), z = input (logits), exact",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.PROBABILITY)),
    cancellation=None,
)
define(
    "cross_entropy", "classification", "logsumexp(z) - z_t, z = input row (logits), t = target class",
    Layout.ROWWISE, (ArgSpec("input", Domain.REAL), _CLASS_TARGET),
    cancellation=_CLASS_SCORE,
)
define(
    "soft_cross_entropy", "classification", "sum_c q_c (logsumexp(z) - z_c), q = target row",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.DISTRIBUTION)),
    cancellation=None,
)
define(
    "nll", "classification", "-l_t, l = input row (log-probabilities)",
    Layout.ROWWISE, (ArgSpec("input", Domain.REAL), _CLASS_TARGET),
    cancellation=_CLASS_SCORE,
)
define(
    "kl_div", "classification", "sum_c p_c log(p_c / q_c), q = input row, p = target row; batch mean",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.DISTRIBUTION), ArgSpec("target", Domain.DISTRIBUTION)),
    regimes=_PROBABILITY_REGIMES,
)
define(
    "categorical_ce", "classification", "-sum_c q_c log p_c, p = input row (probabilities), q = target row",
    Layout.ROWWISE,
    (ArgSpec("input", Domain.DISTRIBUTION), ArgSpec("target", Domain.DISTRIBUTION)),
    regimes=_PROBABILITY_REGIMES,
)
define(
    "focal", "classification",
    "-(1 - p_t)^gamma log p_t, p_t = sigmoid(z) for label 1, 1 - sigmoid(z) for label 0; z = input (logits)",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.BINARY_LABEL)),
    params=(ParamSpec("gamma", 2.0, minimum=0.0),),
    regimes=("typical", "wide", "saturated", "near_overflow", "edge"),
    cancellation=None,
)
