"""Element-wise regression losses on (input, target) real pairs."""
from reference import derivatives as grad
from reference import formulas as mp

from harness.model.registry import register
from harness.model.spec import ArgSpec, Domain, Layout, LossSpec, ParamSpec

_REAL_PAIR = (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL))

register(LossSpec("mse", "regression", "(x - y)^2", Layout.ELEMENTWISE, _REAL_PAIR, mp.mse, grad.mse))
register(LossSpec("mae", "regression", "|x - y|", Layout.ELEMENTWISE, _REAL_PAIR, mp.mae, grad.mae))
register(LossSpec(
    "huber", "regression",
    "d^2/2 if |d| <= delta else delta (|d| - delta/2), d = x - y",
    Layout.ELEMENTWISE, _REAL_PAIR, mp.huber, grad.huber,
    params=(ParamSpec("delta", 1.0, minimum=0.0, minimum_inclusive=False),),
))
register(LossSpec(
    "smooth_l1", "regression",
    "d^2/(2 beta) if |d| < beta else |d| - beta/2, d = x - y",
    Layout.ELEMENTWISE, _REAL_PAIR, mp.smooth_l1, grad.smooth_l1,
    params=(ParamSpec("beta", 1.0, minimum=0.0, minimum_inclusive=False),),
))
register(LossSpec("log_cosh", "regression", "log(cosh(x - y))", Layout.ELEMENTWISE, _REAL_PAIR,
                  mp.log_cosh, grad.log_cosh))

_COUNT_REGIMES = ("typical", "wide", "cancellation", "edge")

register(LossSpec(
    "msle", "regression", "(log1p(x) - log1p(y))^2, x, y >= 0",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.NONNEGATIVE), ArgSpec("target", Domain.NONNEGATIVE)),
    mp.msle, grad.msle, regimes=_COUNT_REGIMES,
))
register(LossSpec(
    "poisson_nll", "regression", "x - y log x, x = input (rate) > 0, y = target >= 0 (Stirling term omitted)",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.POSITIVE), ArgSpec("target", Domain.NONNEGATIVE)),
    mp.poisson_nll, grad.poisson_nll, regimes=_COUNT_REGIMES,
))
register(LossSpec(
    "gaussian_nll", "regression", "(log v + (x - y)^2 / v) / 2, v = var > 0 (constant term omitted)",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL), ArgSpec("var", Domain.POSITIVE)),
    mp.gaussian_nll, grad.gaussian_nll, regimes=("typical", "wide", "near_overflow", "cancellation", "edge"),
))
