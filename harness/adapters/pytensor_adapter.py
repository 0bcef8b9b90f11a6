"""PyTensor (Theano's successor): no loss API, so every loss is the textbook
graph built from pytensor.tensor, compiled. Impl 'composed' compiles it in the
default mode, whose graph rewrites stabilise what the textbook writes (for
example log(sigmoid(z)) -> -softplus(-z), log(1 + x) -> log1p(x),
log(softmax(z)) -> log_softmax(z)); impl 'unstabilized' compiles the same graph
with the rewrite sets 'stabilize' and 'specialize' excluded (EXCLUDED_REWRITES),
so the two together show what the graph optimiser buys.

PyTensor always compiles: a graph is built and compiled once per loss, impl,
reduction, argument dtypes and ranks, parameters and gradient flag, and kept for
the process (any input length reuses it). The C backend needs a C++ compiler
(pytensor.config.cxx); without one PyTensor runs its Python implementations,
which settings() reports. PyTensor has no bfloat16 type, and its compiled
float16 operations raise NotImplementedError (KNOWN).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import get_default_mode
from pytensor.tensor.special import softmax

from harness.adapters.base import FAILS, INACCURATE, Adapter, Impl, Known, Output, reduce
from harness.model import registry
from harness.model.spec import LossSpec

# What impl 'unstabilized' turns off: the rewrite sets that replace unstable
# textbook expressions with stable ones (and specialise operations for speed).
EXCLUDED_REWRITES = ("stabilize", "specialize")
MODES = {"composed": get_default_mode(), "unstabilized": get_default_mode().excluding(*EXCLUDED_REWRITES)}
_NUMPY = {"float16": np.float16, "float32": np.float32, "float64": np.float64}

# A graph: symbolic arguments by canonical name, reduction, parameters -> the symbolic loss.
Graph = Callable[[dict[str, Any], str, dict[str, float]], Any]

_reduce = functools.partial(reduce, mean=pt.mean, total=pt.sum)


def _picked(rows: Any, classes: Any) -> Any:
    """rows[i, classes[i]] for every row."""
    return rows[pt.arange(rows.shape[0]), classes]


def _others(scores: Any, classes: Any) -> Any:
    """Whether each column is not the row's class."""
    return pt.neq(pt.arange(scores.shape[1])[None, :], classes[:, None])


def _norm(rows: Any) -> Any:
    return pt.sqrt(pt.sum(rows**2, axis=1))


def _huber(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    d = a["input"] - a["target"]
    delta = p["delta"]
    return _reduce(pt.switch(pt.abs(d) <= delta, 0.5 * d**2, delta * (pt.abs(d) - 0.5 * delta)), r)


def _smooth_l1(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    d = pt.abs(a["input"] - a["target"])
    beta = p["beta"]
    return _reduce(pt.switch(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta), r)


def _bce(p_: Any, y: Any) -> Any:
    return -(y * pt.log(p_) + (1.0 - y) * pt.log(1.0 - p_))


def _focal(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    prob, y = pt.sigmoid(a["input"]), a["target"]
    p_t = prob * y + (1.0 - prob) * (1.0 - y)
    return _reduce(-((1.0 - p_t) ** p["gamma"]) * pt.log(p_t), r)


def _categorical_hinge(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    s, t = a["input"], a["target"]
    negative = pt.max(pt.switch(_others(s, t), s, -np.inf), axis=1)
    return _reduce(pt.maximum(0.0, 1.0 + negative - _picked(s, t)), r)


def _multi_margin(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    s, t = a["input"], a["target"]
    margins = pt.maximum(0.0, p["margin"] - _picked(s, t)[:, None] + s)
    return _reduce(pt.sum(pt.switch(_others(s, t), margins, 0.0), axis=1) / s.shape[1], r)


def _contrastive(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    d, label = _norm(a["input"] - a["input2"]), a["target"]
    gap = pt.maximum(0.0, p["margin"] - d)
    return _reduce((label * d**2 + (1.0 - label) * gap**2) / 2.0, r)


def _triplet_margin(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    anchor = a["input"]
    gap = _norm(anchor - a["positive"]) - _norm(anchor - a["negative"])
    return _reduce(pt.maximum(0.0, gap + p["margin"]), r)


def _cosine_similarity(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    x, y = a["input"], a["target"]
    return _reduce(-pt.sum(x * y, axis=1) / (_norm(x) * _norm(y)), r)


def _kl_div(a: dict[str, Any], r: str, p: dict[str, float]) -> Any:
    q, target = a["input"], a["target"]  # 0 log 0 = 0, as the definition has it
    return _reduce(pt.sum(pt.switch(target > 0, target * pt.log(target / q), 0.0), axis=1), r)


GRAPHS: dict[str, Graph] = {
    "mse": lambda a, r, p: _reduce((a["input"] - a["target"]) ** 2, r),
    "mae": lambda a, r, p: _reduce(pt.abs(a["input"] - a["target"]), r),
    "huber": _huber,
    "smooth_l1": _smooth_l1,
    "log_cosh": lambda a, r, p: _reduce(pt.log(pt.cosh(a["input"] - a["target"])), r),
    "msle": lambda a, r, p: _reduce((pt.log(1.0 + a["input"]) - pt.log(1.0 + a["target"])) ** 2, r),
    "poisson_nll": lambda a, r, p: _reduce(a["input"] - a["target"] * pt.log(a["input"]), r),
    "gaussian_nll": lambda a, r, p: _reduce(
        0.5 * (pt.log(a["var"]) + (a["input"] - a["target"]) ** 2 / a["var"]), r),
    "bce": lambda a, r, p: _reduce(_bce(a["input"], a["target"]), r),
    "bce_logits": lambda a, r, p: _reduce(_bce(pt.sigmoid(a["input"]), a["target"]), r),
    "focal": _focal,
    "soft_margin": lambda a, r, p: _reduce(pt.log(1.0 + pt.exp(-a["target"] * a["input"])), r),
    "hinge": lambda a, r, p: _reduce(pt.maximum(0.0, 1.0 - a["target"] * a["input"]), r),
    "squared_hinge": lambda a, r, p: _reduce(pt.maximum(0.0, 1.0 - a["target"] * a["input"]) ** 2, r),
    "margin_ranking": lambda a, r, p: _reduce(
        pt.maximum(0.0, -a["target"] * (a["input"] - a["input2"]) + p["margin"]), r),
    "cross_entropy": lambda a, r, p: _reduce(-_picked(pt.log(softmax(a["input"], axis=1)), a["target"]), r),
    "soft_cross_entropy": lambda a, r, p: _reduce(
        -pt.sum(a["target"] * pt.log(softmax(a["input"], axis=1)), axis=1), r),
    "nll": lambda a, r, p: _reduce(-_picked(a["input"], a["target"]), r),
    "categorical_ce": lambda a, r, p: _reduce(-pt.sum(a["target"] * pt.log(a["input"]), axis=1), r),
    "kl_div": _kl_div,
    "categorical_hinge": _categorical_hinge,
    "multi_margin": _multi_margin,
    "contrastive": _contrastive,
    "triplet_margin": _triplet_margin,
    "cosine_similarity": _cosine_similarity,
    "l2_penalty": lambda a, r, p: _reduce(a["input"] ** 2, r),
    "l1_penalty": lambda a, r, p: _reduce(pt.abs(a["input"]), r),
}


@functools.lru_cache(maxsize=None)
def _compiled(loss: str, impl: str, reduction: str, kinds: tuple[tuple[str, str, int], ...],
              params: tuple[tuple[str, float], ...], gradient: bool) -> Callable[..., Any]:
    """The compiled function of one graph: arguments (name, dtype, rank) in order."""
    symbols = {name: pt.tensor(name=name, dtype=dtype, shape=(None,) * rank) for name, dtype, rank in kinds}
    loss_value = GRAPHS[loss](symbols, reduction, dict(params))
    output = pytensor.grad(loss_value, symbols["input"]) if gradient else loss_value
    return pytensor.function(list(symbols.values()), output, mode=MODES[impl])


def _compile_and_call(loss: str, impl: str, gradient: bool) -> Impl:
    def call(a: dict[str, Any], reduction: str, p: dict[str, float]) -> Any:
        kinds = tuple((name, str(value.dtype), value.ndim) for name, value in a.items())
        function = _compiled(loss, impl, reduction, kinds, tuple(sorted(p.items())), gradient)
        return function(*a.values())
    return call


# Cells the framework cannot run or computes far less accurately than the dtype allows, and why
# (the cell tests check each still shows).
KNOWN = (
    *(Known(FAILS, loss, "PyTensor has no bfloat16 type", dtypes=("bfloat16",)) for loss in GRAPHS),
    *(Known(FAILS, loss, "PyTensor's compiled float16 operations raise NotImplementedError", dtypes=("float16",))
      for loss in GRAPHS),
    Known(INACCURATE, "msle", "log1p(x) - log1p(y) cancels when x is close to y"),
    Known(INACCURATE, "log_cosh", "log(cosh(d)) loses d^2/2 in the rounding of cosh(d) near 1 for small |d| "
                                  "(no rewrite replaces it)"),
)


class PyTensorAdapter(Adapter):
    name = "pytensor"
    impls = {impl: {loss: _compile_and_call(loss, impl, False) for loss in GRAPHS} for impl in MODES}
    gradient_method = "pytensor.grad"
    known = KNOWN
    modes = ("compiled",)  # PyTensor always compiles: its impls are compiled functions

    def compile(self, function: Impl) -> Impl:
        return function

    @contextmanager
    def cold_compiler(self) -> Iterator[None]:
        """The compiled functions of this process are dropped (graphs are rewritten
        and linked again); the C modules PyTensor keeps on disk stay."""
        _compiled.cache_clear()
        yield

    def version(self) -> str:
        return pytensor.__version__

    def devices(self) -> list[str]:
        return ["cpu"]

    def settings(self) -> dict[str, Any]:
        return {"pytensor.config.mode": str(pytensor.config.mode),
                "pytensor.config.cxx": pytensor.config.cxx or "none: Python implementations",
                "unstabilized excludes": ", ".join(EXCLUDED_REWRITES)}

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> np.ndarray:
        if dtype is None:
            return np.asarray(array, dtype=np.int64)
        if dtype not in _NUMPY:
            raise TypeError(f"PyTensor has no {dtype} type")
        return np.asarray(array, dtype=_NUMPY[dtype])  # exact: the values are representable in dtype

    def to_output(self, result: Any) -> Output:
        values = np.asarray(result)
        return Output(values.astype(np.float64).reshape(-1), str(values.dtype))

    def gradient(self, spec: LossSpec, impl: str) -> Impl:
        return _compile_and_call(spec.name, impl, True)


assert set(GRAPHS) == set(registry.names()), "every loss has its textbook graph"

ADAPTER = PyTensorAdapter()
