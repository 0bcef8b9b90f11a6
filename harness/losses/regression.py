"""Element-wise regression losses on (input, target) real pairs."""
from reference import formulas as mp

from harness.registry import register
from harness.spec import ArgSpec, Domain, Layout, LossSpec, ParamSpec

_REAL_PAIR = (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL))

register(LossSpec("mse", "regression", "(x - y)^2", Layout.ELEMENTWISE, _REAL_PAIR, mp.mse))
register(LossSpec("mae", "regression", "|x - y|", Layout.ELEMENTWISE, _REAL_PAIR, mp.mae))
register(LossSpec(
    "huber", "regression",
    "d^2/2 if |d| <= delta else delta (|d| - delta/2), d = x - y",
    Layout.ELEMENTWISE, _REAL_PAIR, mp.huber,
    params=(ParamSpec("delta", 1.0, minimum=0.0, minimum_inclusive=False),),
))
register(LossSpec(
    "smooth_l1", "regression",
    "d^2/(2 beta) if |d| < beta else |d| - beta/2, d = x - y",
    Layout.ELEMENTWISE, _REAL_PAIR, mp.smooth_l1,
    params=(ParamSpec("beta", 1.0, minimum=0.0, minimum_inclusive=False),),
))
register(LossSpec("log_cosh", "regression", "log(cosh(x - y))", Layout.ELEMENTWISE, _REAL_PAIR, mp.log_cosh))
