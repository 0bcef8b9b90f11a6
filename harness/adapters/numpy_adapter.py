"""NumPy has no loss API, so every loss is written twice:

- ``naive``: the textbook formula as tutorials write it, reduced with np.mean/np.sum;
- ``stable``: the formulation a numerical analyst would use (log-sum-exp shift,
  log1p/softplus, no 0*log 0) with the reduction accumulated in a wider type.

Both compute element-wise in the requested dtype (bfloat16 through ml_dtypes),
and both return the requested dtype. Every constant and parameter is cast to the
array's dtype first: ml_dtypes promotes bfloat16 with a Python float to float32.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from harness.adapters.base import Adapter, Impl, Output

DTYPES: dict[str, Any] = {
    "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64,
}
_WIDER = {np.dtype(np.float16): np.float32, np.dtype(ml_dtypes.bfloat16): np.float32,
          np.dtype(np.float32): np.float64, np.dtype(np.float64): np.float64}

Array = np.ndarray


def _const(like: Array, value: float) -> Any:
    """A scalar in the array's dtype (a Python float would promote bfloat16 to float32,
    a NumPy float64 scalar any dtype to float64)."""
    return like.dtype.type(value)


def _naive_reduce(items: Array, reduction: str) -> Array:
    if reduction == "mean":
        return np.asarray(np.mean(items))
    if reduction == "sum":
        return np.asarray(np.sum(items))
    return items


def _wide_reduce(items: Array, reduction: str) -> Array:
    if reduction == "none":
        return items
    total = np.sum(items, dtype=_WIDER[items.dtype])
    if reduction == "mean":
        total = total / items.size
    return np.asarray(total).astype(items.dtype)


def _elementwise(per_element: Callable[..., Array], reduce: Callable[[Array, str], Array]) -> Impl:
    def impl(a: dict[str, Array], reduction: str, params: dict[str, float]) -> Array:
        return reduce(per_element(a["input"], a["target"], **params), reduction)
    return impl


def _rowwise(per_row: Callable[..., Array], reduce: Callable[[Array, str], Array]) -> Impl:
    def impl(a: dict[str, Array], reduction: str, params: dict[str, float]) -> Array:
        return reduce(per_row(**a, **params), reduction)
    return impl


# --- element-wise formulas --------------------------------------------------

def _mse(x: Array, y: Array) -> Array:
    return (x - y) ** 2


def _mae(x: Array, y: Array) -> Array:
    return np.abs(x - y)


def _huber(x: Array, y: Array, delta: float) -> Array:
    d = np.abs(x - y)
    delta_, half = _const(d, delta), _const(d, 0.5)
    return np.where(d <= delta_, half * d * d, delta_ * (d - half * delta_))


def _smooth_l1(x: Array, y: Array, beta: float) -> Array:
    d = np.abs(x - y)
    beta_, half = _const(d, beta), _const(d, 0.5)
    return np.where(d < beta_, half * d * d / beta_, d - half * beta_)


def _log_cosh_naive(x: Array, y: Array) -> Array:
    return np.log(np.cosh(x - y))


def _log_cosh_stable(x: Array, y: Array) -> Array:
    d = np.abs(x - y)
    two = _const(d, 2.0)
    small = np.log1p(two * np.sinh(d / 2) ** 2)  # no cancellation near 0
    large = d + np.log1p(np.exp(-two * d)) - _const(d, math.log(2.0))  # no overflow
    return np.where(d < 1, small, large)


def _bce_naive(p: Array, y: Array) -> Array:
    one = _const(p, 1.0)
    return -(y * np.log(p) + (one - y) * np.log(one - p))


def _xlog(weight: Array, log_value: Array) -> Array:
    """weight * log_value with 0 * log 0 = 0."""
    return np.where(weight == 0, np.zeros_like(log_value), weight * log_value)


def _bce_stable(p: Array, y: Array) -> Array:
    return -(_xlog(y, np.log(p)) + _xlog(_const(y, 1.0) - y, np.log1p(-p)))


def _bce_logits_naive(z: Array, y: Array) -> Array:
    one = _const(z, 1.0)
    return _bce_naive(one / (one + np.exp(-z)), y)


def _bce_logits_stable(z: Array, y: Array) -> Array:
    # The usual max(z, 0) - z y cancels for large z and y near 1; (1 - y) z does not
    # (1 - y is exact for y >= 1/2), nor does y |z| for z <= 0.
    linear = np.where(z > 0, (_const(y, 1.0) - y) * z, y * -z)
    return linear + np.log1p(np.exp(-np.abs(z)))


def _hinge(s: Array, y: Array) -> Array:
    return np.maximum(_const(s, 1.0) - y * s, _const(s, 0.0))


def _squared_hinge(s: Array, y: Array) -> Array:
    return _hinge(s, y) ** 2


# --- row-wise formulas --------------------------------------------------------

def _rows(x: Array) -> Array:
    return np.arange(x.shape[0])


def _softmax_naive(z: Array) -> Array:
    e = np.exp(z)
    return e / np.sum(e, axis=1, keepdims=True)


def _log_softmax_stable(z: Array) -> Array:
    shifted = z - np.max(z, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True, dtype=_WIDER[z.dtype])).astype(z.dtype)


def _cross_entropy_naive(input: Array, target: Array) -> Array:
    return -np.log(_softmax_naive(input)[_rows(input), target])


def _cross_entropy_stable(input: Array, target: Array) -> Array:
    return -_log_softmax_stable(input)[_rows(input), target]


def _soft_cross_entropy_naive(input: Array, target: Array) -> Array:
    return -np.sum(target * np.log(_softmax_naive(input)), axis=1)


def _soft_cross_entropy_stable(input: Array, target: Array) -> Array:
    terms = _xlog(target, _log_softmax_stable(input))
    return -np.sum(terms, axis=1, dtype=_WIDER[input.dtype]).astype(input.dtype)


def _nll(input: Array, target: Array) -> Array:
    return -input[_rows(input), target]


def _kl_div_naive(input: Array, target: Array) -> Array:
    return np.sum(target * np.log(target / input), axis=1)


def _kl_div_stable(input: Array, target: Array) -> Array:
    terms = _xlog(target, np.log(target) - np.log(input))
    return np.sum(terms, axis=1, dtype=_WIDER[input.dtype]).astype(input.dtype)


def _margins(s: Array, t: Array, margin: float) -> Array:
    """max(0, margin - s_t + s_j) for every j, zero at j = t."""
    positive = s[_rows(s), t][:, None]
    m = np.maximum(_const(s, margin) - positive + s, _const(s, 0.0))
    m[_rows(s), t] = 0
    return m


def _multi_margin_naive(input: Array, target: Array, margin: float) -> Array:
    return np.sum(_margins(input, target, margin), axis=1) / input.shape[1]


def _multi_margin_stable(input: Array, target: Array, margin: float) -> Array:
    total = np.sum(_margins(input, target, margin), axis=1, dtype=_WIDER[input.dtype])
    return (total / input.shape[1]).astype(input.dtype)


def _categorical_hinge(input: Array, target: Array) -> Array:
    positive = input[_rows(input), target]
    others = input.copy()
    others[_rows(input), target] = -np.inf
    return np.maximum(_const(input, 1.0) + np.max(others, axis=1) - positive, _const(input, 0.0))


def _contrastive_naive(input: Array, target: Array, input2: Array, margin: float) -> Array:
    d = np.sqrt(np.sum((input - input2) ** 2, axis=1))
    gap = np.maximum(_const(d, margin) - d, _const(d, 0.0))
    return (target * d**2 + (_const(d, 1.0) - target) * gap**2) / 2


def _contrastive_stable(input: Array, target: Array, input2: Array, margin: float) -> Array:
    diff = input - input2
    scale = np.max(np.abs(diff), axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, np.ones_like(scale))  # scaled norm: no overflow
    d = (scale[:, 0] * np.sqrt(np.sum((diff / scale) ** 2, axis=1, dtype=_WIDER[diff.dtype]))).astype(diff.dtype)
    gap = np.maximum(_const(d, margin) - d, _const(d, 0.0))
    return (_xlog(target, d * d) + _xlog(_const(d, 1.0) - target, gap * gap)) / 2


def _pair(naive: Callable[..., Array], stable: Callable[..., Array], rowwise: bool) -> tuple[Impl, Impl]:
    wrap = _rowwise if rowwise else _elementwise
    return wrap(naive, _naive_reduce), wrap(stable, _wide_reduce)


_FORMULAS: dict[str, tuple[Callable[..., Array], Callable[..., Array], bool]] = {
    "mse": (_mse, _mse, False),
    "mae": (_mae, _mae, False),
    "huber": (_huber, _huber, False),
    "smooth_l1": (_smooth_l1, _smooth_l1, False),
    "log_cosh": (_log_cosh_naive, _log_cosh_stable, False),
    "bce": (_bce_naive, _bce_stable, False),
    "bce_logits": (_bce_logits_naive, _bce_logits_stable, False),
    "hinge": (_hinge, _hinge, False),
    "squared_hinge": (_squared_hinge, _squared_hinge, False),
    "cross_entropy": (_cross_entropy_naive, _cross_entropy_stable, True),
    "soft_cross_entropy": (_soft_cross_entropy_naive, _soft_cross_entropy_stable, True),
    "nll": (_nll, _nll, True),
    "kl_div": (_kl_div_naive, _kl_div_stable, True),
    "multi_margin": (_multi_margin_naive, _multi_margin_stable, True),
    "categorical_hinge": (_categorical_hinge, _categorical_hinge, True),
    "contrastive": (_contrastive_naive, _contrastive_stable, True),
}
_PAIRS = {name: _pair(*formulas) for name, formulas in _FORMULAS.items()}


class NumpyAdapter(Adapter):
    name = "numpy"
    impls = {
        "naive": {name: pair[0] for name, pair in _PAIRS.items()},
        "stable": {name: pair[1] for name, pair in _PAIRS.items()},
    }

    def version(self) -> str:
        return f"{np.__version__} (ml_dtypes {ml_dtypes.__version__})"

    def devices(self) -> list[str]:
        return ["cpu"]

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> Array:
        if dtype is None:
            return np.asarray(array, dtype=np.int64)
        return np.asarray(array).astype(DTYPES[dtype])

    def to_output(self, result: Array) -> Output:
        result = np.asarray(result)
        return Output(result.astype(np.float64).reshape(-1), _dtype_name(result.dtype))

    def context(self, device: str) -> Any:
        return np.errstate(all="ignore")  # overflow and 0 * log 0 are results here, not warnings


def _dtype_name(dtype: np.dtype) -> str:
    return "bfloat16" if dtype == np.dtype(ml_dtypes.bfloat16) else dtype.name


ADAPTER = NumpyAdapter()
