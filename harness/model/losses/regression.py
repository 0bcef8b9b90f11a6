"""Element-wise regression losses on (input, target) real pairs."""
from harness.model.registry import define
from harness.model.spec import ArgSpec, Domain, Layout, ParamSpec

_REAL_PAIR = (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL))

define("mse", "regression", "(x - y)^2", Layout.ELEMENTWISE, _REAL_PAIR)
define("mae", "regression", "|x - y|", Layout.ELEMENTWISE, _REAL_PAIR)
define(
    "huber", "regression",
    "d^2/2 if |d| <= delta else delta (|d| - delta/2), d = x - y",
    Layout.ELEMENTWISE, _REAL_PAIR,
    params=(ParamSpec("delta", 1.0, minimum=0.0, minimum_inclusive=False),),
)
define(
    "smooth_l1", "regression",
    "d^2/(2 beta) if |d| < beta else |d| - beta/2, d = x - y",
    Layout.ELEMENTWISE, _REAL_PAIR,
    params=(ParamSpec("beta", 1.0, minimum=0.0, minimum_inclusive=False),),
)
define("log_cosh", "regression", "log(cosh(x - y))", Layout.ELEMENTWISE, _REAL_PAIR)

_COUNT_REGIMES = ("typical", "wide", "cancellation", "edge")

define(
    "msle", "regression", "(log1p(x) - log1p(y))^2, x, y >= 0",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.NONNEGATIVE), ArgSpec("target", Domain.NONNEGATIVE)), regimes=_COUNT_REGIMES,
)
define(
    "poisson_nll", "regression", "x - y log x, x = input (rate) > 0, y = target >= 0 (Stirling term omitted)",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.POSITIVE), ArgSpec("target", Domain.NONNEGATIVE)), regimes=_COUNT_REGIMES,
)
define(
    "gaussian_nll", "regression", "(log v + (x - y)^2 / v) / 2, v = var > 0 (constant term omitted)",
    Layout.ELEMENTWISE,
    (ArgSpec("input", Domain.REAL), ArgSpec("target", Domain.REAL), ArgSpec("var", Domain.POSITIVE)), regimes=("typical", "wide", "near_overflow", "cancellation", "edge"),
)
