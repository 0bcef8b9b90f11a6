"""Probabilistic classification losses: binary, categorical and divergence."""
import functools

from harness.model.registry import define
from harness.model.spec import Cancellation, Domain, Layout, ParamSpec, pair

_classification = functools.partial(define, family="classification")
_CLASS_SCORE = Cancellation("input", "target", "class_score")  # every score onto the target's
# Losses of probabilities only: no intermediate can overflow, so no near_overflow regime.
_PROBABILITY_REGIMES = ("typical", "wide", "saturated", "cancellation", "edge")
# No argument shares the logits' domain, so their cancellation regime draws typical inputs.
_NOTHING_TO_CANCEL = None

_classification("bce", definition="-(y log p + (1 - y) log(1 - p)), p = input", layout=Layout.ELEMENTWISE,
                args=pair(Domain.PROBABILITY, Domain.PROBABILITY), regimes=_PROBABILITY_REGIMES)
_classification("bce_logits", definition="bce(sigmoid(z), y), z = input (logits), exact", layout=Layout.ELEMENTWISE,
                args=pair(Domain.REAL, Domain.PROBABILITY), cancellation=_NOTHING_TO_CANCEL)
_classification("cross_entropy", definition="logsumexp(z) - z_t, z = input row (logits), t = target class",
                layout=Layout.ROWWISE, args=pair(Domain.REAL, Domain.CLASS_INDEX), cancellation=_CLASS_SCORE)
_classification("soft_cross_entropy", definition="sum_c q_c (logsumexp(z) - z_c), q = target row",
                layout=Layout.ROWWISE, args=pair(Domain.REAL, Domain.DISTRIBUTION), cancellation=_NOTHING_TO_CANCEL)
_classification("nll", definition="-l_t, l = input row (log-probabilities)", layout=Layout.ROWWISE,
                args=pair(Domain.REAL, Domain.CLASS_INDEX), cancellation=_CLASS_SCORE)
_classification("kl_div", definition="sum_c p_c log(p_c / q_c), q = input row, p = target row; batch mean",
                layout=Layout.ROWWISE, args=pair(Domain.DISTRIBUTION, Domain.DISTRIBUTION),
                regimes=_PROBABILITY_REGIMES)
_classification("categorical_ce", definition="-sum_c q_c log p_c, p = input row (probabilities), q = target row",
                layout=Layout.ROWWISE, args=pair(Domain.DISTRIBUTION, Domain.DISTRIBUTION),
                regimes=_PROBABILITY_REGIMES)
_classification(
    "focal",
    definition="-(1 - p_t)^gamma log p_t, p_t = sigmoid(z) for label 1, 1 - sigmoid(z) for label 0; z = input (logits)",
    layout=Layout.ELEMENTWISE, args=pair(Domain.REAL, Domain.BINARY_LABEL),
    params=(ParamSpec("gamma", 2.0, minimum=0.0),), regimes=("typical", "wide", "saturated", "near_overflow", "edge"),
    cancellation=None,
)
