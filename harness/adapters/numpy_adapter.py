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
from harness.spec import LossSpec

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


def _naive_reduce(items: Array, reduction: str, dtype: np.dtype) -> Array:
    if reduction == "mean":
        return np.asarray(np.mean(items))
    if reduction == "sum":
        return np.asarray(np.sum(items))
    return items


def _wide_reduce(items: Array, reduction: str, dtype: np.dtype) -> Array:
    """Accumulate in the wider type; ``items`` may already be wider than ``dtype``."""
    if reduction != "none":
        total = np.sum(items, dtype=_WIDER[dtype])
        items = np.asarray(total / items.size if reduction == "mean" else total)
    return items.astype(dtype)


def _impl(per_item: Callable[..., Array], reduce: Callable[[Array, str, np.dtype], Array]) -> Impl:
    """Arguments arrive in the spec's order; one value per element or row, then reduced."""
    def impl(a: dict[str, Array], reduction: str, params: dict[str, float]) -> Array:
        return reduce(per_item(*a.values(), **params), reduction, a["input"].dtype)
    impl.__wrapped__ = per_item  # type: ignore[attr-defined]  (what the atlas shows as the code)
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


def _msle_naive(x: Array, y: Array) -> Array:
    one = _const(x, 1.0)
    return (np.log(x + one) - np.log(y + one)) ** 2


def _log1p_difference(x: Array, y: Array) -> Array:
    # log1p(x) - log1p(y) = log1p((x - y) / (1 + y)) near x = y (the difference of
    # logs cancels there), log((1 + x) / (1 + y)) away from it (log1p(u) loses u near -1).
    one = _const(x, 1.0)
    u = (x - y) / (one + y)
    return np.where(np.abs(u) < _const(x, 0.5), np.log1p(u), np.log((one + x) / (one + y)))


def _msle_stable(x: Array, y: Array) -> Array:
    d = _log1p_difference(x, y)
    return d * d


def _poisson_nll_naive(x: Array, y: Array) -> Array:
    return x - y * np.log(x)


def _poisson_nll_stable(x: Array, y: Array) -> Array:
    return x - _xlog(y, np.log(x))


def _gaussian_nll_naive(x: Array, y: Array, var: Array) -> Array:
    return _const(x, 0.5) * (np.log(var) + (x - y) ** 2 / var)


def _gaussian_nll_stable(x: Array, y: Array, var: Array) -> Array:
    scaled = (x - y) / np.sqrt(var)  # (x - y)^2 alone overflows while the ratio is finite
    return _const(x, 0.5) * (np.log(var) + scaled * scaled)


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


def _softplus(t: Array) -> Array:
    return np.maximum(t, _const(t, 0.0)) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t: Array) -> Array:
    one, e = _const(t, 1.0), np.exp(-np.abs(t))
    return np.where(t >= 0, one / (one + e), e / (one + e))


def _soft_margin_naive(s: Array, y: Array) -> Array:
    return np.log(_const(s, 1.0) + np.exp(-y * s))


def _soft_margin_stable(s: Array, y: Array) -> Array:
    return _softplus(-y * s)


def _focal_naive(z: Array, y: Array, gamma: float) -> Array:
    one = _const(z, 1.0)
    p = one / (one + np.exp(-z))
    p_t = np.where(y == 1, p, one - p)
    return -((one - p_t) ** _const(z, gamma)) * np.log(p_t)


def _focal_stable(z: Array, y: Array, gamma: float) -> Array:
    t = np.where(y == 1, z, -z)  # p_t = sigmoid(t)
    return _sigmoid(-t) ** _const(z, gamma) * _softplus(-t)


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


def _categorical_ce_naive(input: Array, target: Array) -> Array:
    return -np.sum(target * np.log(input), axis=1)


def _categorical_ce_stable(input: Array, target: Array) -> Array:
    return -np.sum(_xlog(target, np.log(input)), axis=1, dtype=_WIDER[input.dtype]).astype(input.dtype)


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


def _norm_naive(diff: Array) -> Array:
    return np.sqrt(np.sum(diff**2, axis=1))


def _norm_stable(diff: Array) -> Array:
    """Row norms scaled by the row's largest magnitude (no overflow or underflow of
    the squares), accumulated in the wider type."""
    scale = np.max(np.abs(diff), axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, np.ones_like(scale))
    return (scale[:, 0] * np.sqrt(np.sum((diff / scale) ** 2, axis=1, dtype=_WIDER[diff.dtype]))).astype(diff.dtype)


def _contrastive_naive(input: Array, target: Array, input2: Array, margin: float) -> Array:
    d = _norm_naive(input - input2)
    gap = np.maximum(_const(d, margin) - d, _const(d, 0.0))
    return (target * d**2 + (_const(d, 1.0) - target) * gap**2) / 2


def _contrastive_stable(input: Array, target: Array, input2: Array, margin: float) -> Array:
    d = _norm_stable(input - input2)
    gap = np.maximum(_const(d, margin) - d, _const(d, 0.0))
    return (_xlog(target, d * d) + _xlog(_const(d, 1.0) - target, gap * gap)) / 2


def _cosine_similarity_naive(input: Array, target: Array) -> Array:
    return -np.sum(input * target, axis=1) / (_norm_naive(input) * _norm_naive(target))


def _cosine_similarity_stable(input: Array, target: Array) -> Array:
    # Each row divided by its norm first: the product of the norms cannot overflow.
    unit_x = input / _norm_stable(input)[:, None]
    unit_y = target / _norm_stable(target)[:, None]
    return -np.sum(unit_x * unit_y, axis=1, dtype=_WIDER[input.dtype]).astype(input.dtype)


def _triplet(norm: Callable[[Array], Array]) -> Callable[..., Array]:
    def per_row(anchor: Array, positive: Array, negative: Array, margin: float) -> Array:
        gap = norm(anchor - positive) - norm(anchor - negative) + _const(anchor, margin)
        return np.maximum(gap, _const(anchor, 0.0))
    return per_row


def _margin_ranking(x1: Array, y: Array, x2: Array, margin: float) -> Array:
    return np.maximum(-y * (x1 - x2) + _const(x1, margin), _const(x1, 0.0))


def _l2_penalty_naive(w: Array) -> Array:
    return w**2


def _l2_penalty_stable(w: Array) -> Array:
    wide = w.astype(_WIDER[w.dtype])  # squares of half values cannot overflow there
    return wide * wide


_FORMULAS: dict[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
    "mse": (_mse, _mse),
    "mae": (_mae, _mae),
    "huber": (_huber, _huber),
    "smooth_l1": (_smooth_l1, _smooth_l1),
    "log_cosh": (_log_cosh_naive, _log_cosh_stable),
    "msle": (_msle_naive, _msle_stable),
    "poisson_nll": (_poisson_nll_naive, _poisson_nll_stable),
    "gaussian_nll": (_gaussian_nll_naive, _gaussian_nll_stable),
    "bce": (_bce_naive, _bce_stable),
    "bce_logits": (_bce_logits_naive, _bce_logits_stable),
    "focal": (_focal_naive, _focal_stable),
    "hinge": (_hinge, _hinge),
    "squared_hinge": (_squared_hinge, _squared_hinge),
    "soft_margin": (_soft_margin_naive, _soft_margin_stable),
    "margin_ranking": (_margin_ranking, _margin_ranking),
    "cross_entropy": (_cross_entropy_naive, _cross_entropy_stable),
    "soft_cross_entropy": (_soft_cross_entropy_naive, _soft_cross_entropy_stable),
    "categorical_ce": (_categorical_ce_naive, _categorical_ce_stable),
    "nll": (_nll, _nll),
    "kl_div": (_kl_div_naive, _kl_div_stable),
    "multi_margin": (_multi_margin_naive, _multi_margin_stable),
    "categorical_hinge": (_categorical_hinge, _categorical_hinge),
    "contrastive": (_contrastive_naive, _contrastive_stable),
    "cosine_similarity": (_cosine_similarity_naive, _cosine_similarity_stable),
    "triplet_margin": (_triplet(_norm_naive), _triplet(_norm_stable)),
    "l2_penalty": (_l2_penalty_naive, _l2_penalty_stable),
    "l1_penalty": (np.abs, np.abs),
}


# --- analytic gradients -----------------------------------------------------------
# d(item)/d(input), shaped like input. The stable impl has one for every loss,
# written as carefully as its forward (no cancelling 1 - p, zero weights kept
# zero, norms scaled); the naive impl has the textbook one where it is simple
# (where naive and stable share their forward, they share the gradient).

def _sign(d: Array) -> Array:
    return np.sign(d).astype(d.dtype)


def _active(h: Array, slope: Array) -> Array:
    """d/dh max(0, h) times ``slope`` (0 at the corner, as frameworks do)."""
    return np.where(h > 0, slope, np.zeros_like(slope))


def _ratio(weight: Array, value: Array) -> Array:
    """weight / value, zero for a zero weight (the derivative of 0 log value)."""
    return np.where(weight == 0, np.zeros_like(value), weight / value)


def _huber_grad(x: Array, y: Array, delta: float) -> Array:
    return np.clip(x - y, -_const(x, delta), _const(x, delta))


def _smooth_l1_grad(x: Array, y: Array, beta: float) -> Array:
    d = x - y
    return np.where(np.abs(d) < _const(d, beta), d / _const(d, beta), _sign(d))


def _msle_grad_naive(x: Array, y: Array) -> Array:
    one = _const(x, 1.0)
    return _const(x, 2.0) * (np.log(x + one) - np.log(y + one)) / (x + one)


def _bce_grad_naive(p: Array, y: Array) -> Array:
    one = _const(p, 1.0)
    return -y / p + (one - y) / (one - p)


def _bce_grad_stable(p: Array, y: Array) -> Array:
    # (p - y) / (p (1 - p)): one cancellation-free numerator; at p = 0 or 1 the
    # separate terms with zero weights kept zero.
    one = _const(p, 1.0)
    inside = (p > 0) & (p < one)
    combined = (p - y) / (p * (one - p))
    return np.where(inside, combined, _ratio(one - y, one - p) - _ratio(y, p))


def _bce_logits_grad_naive(z: Array, y: Array) -> Array:
    one = _const(z, 1.0)
    return one / (one + np.exp(-z)) - y


def _bce_logits_grad_stable(z: Array, y: Array) -> Array:
    # sigmoid(z) - y, written as (1 - y) - sigmoid(-z) for z >= 0: for y = 1 that is
    # exactly -sigmoid(-z), where sigmoid(z) - 1 would round to 0.
    return np.where(z >= 0, (_const(z, 1.0) - y) - _sigmoid(-z), _sigmoid(z) - y)


def _soft_margin_grad_naive(s: Array, y: Array) -> Array:
    e = np.exp(-y * s)
    return -y * e / (_const(s, 1.0) + e)


def _focal_grad(z: Array, y: Array, gamma: float) -> Array:
    # With t = +-z: dL/dt = -sigmoid(-t)^gamma (gamma sigmoid(t) softplus(-t) + sigmoid(-t)).
    t = np.where(y == 1, z, -z)
    other = _sigmoid(-t)
    slope = -(other ** _const(z, gamma)) * (_const(z, gamma) * _sigmoid(t) * _softplus(-t) + other)
    return np.where(y == 1, slope, -slope)


def _margin_ranking_grad(x1: Array, y: Array, x2: Array, margin: float) -> Array:
    return _active(-y * (x1 - x2) + _const(x1, margin), -y)


def _one_hot(like: Array, t: Array) -> Array:
    hot = np.zeros_like(like)
    hot[_rows(like), t] = 1
    return hot


def _cross_entropy_grad_stable(input: Array, target: Array) -> Array:
    # softmax - onehot, the target's entry as minus the others' (wide) sum:
    # 1 - softmax_t rounds to 0 for a confident prediction, the others' sum does not.
    g = np.exp(_log_softmax_stable(input))
    g[_rows(input), target] = 0
    g[_rows(input), target] = -np.sum(g, axis=1, dtype=_WIDER[input.dtype]).astype(input.dtype)
    return g


def _soft_cross_entropy_grad_stable(input: Array, target: Array) -> Array:
    total = np.sum(target, axis=1, keepdims=True, dtype=_WIDER[input.dtype]).astype(input.dtype)
    return total * np.exp(_log_softmax_stable(input)) - target


def _multi_margin_grad(input: Array, target: Array, margin: float) -> Array:
    count = _const(input, input.shape[1])
    g = np.where(_margins(input, target, margin) > 0, _const(input, 1.0) / count, _const(input, 0.0))
    g[_rows(input), target] = -np.sum(g, axis=1)
    return g


def _categorical_hinge_grad(input: Array, target: Array) -> Array:
    positive = input[_rows(input), target]
    others = input.copy()
    others[_rows(input), target] = -np.inf
    runner_up = np.argmax(others, axis=1)
    active = (_const(input, 1.0) + others[_rows(input), runner_up] - positive > 0).astype(input.dtype)
    g = np.zeros_like(input)
    g[_rows(input), runner_up] = active
    g[_rows(input), target] -= active
    return g


def _cosine_similarity_grad_naive(input: Array, target: Array) -> Array:
    nx, ny = _norm_naive(input)[:, None], _norm_naive(target)[:, None]
    dot = np.sum(input * target, axis=1)[:, None]
    return -(target / (nx * ny) - dot * input / (nx**3 * ny))


def _cosine_similarity_grad_stable(input: Array, target: Array) -> Array:
    # With unit rows u, v: -(v - (u.v) u) / |x|; no product of norms to overflow.
    nx = _norm_stable(input)[:, None]
    u, v = input / nx, target / _norm_stable(target)[:, None]
    cosine = np.sum(u * v, axis=1, keepdims=True, dtype=_WIDER[input.dtype]).astype(input.dtype)
    return -(v - cosine * u) / nx


def _contrastive_grad(norm: Callable[[Array], Array]) -> Callable[..., Array]:
    def per_row(input: Array, target: Array, input2: Array, margin: float) -> Array:
        diff = input - input2
        d = norm(diff)
        gap = np.maximum(_const(d, margin) - d, _const(d, 0.0))
        pull = np.where(gap > 0, (_const(d, 1.0) - target) * gap / d, np.zeros_like(d))
        return diff * (target - pull)[:, None]
    return per_row


def _triplet_grad(norm: Callable[[Array], Array]) -> Callable[..., Array]:
    def per_row(anchor: Array, positive: Array, negative: Array, margin: float) -> Array:
        to_p, to_n = anchor - positive, anchor - negative
        d_p, d_n = norm(to_p), norm(to_n)
        active = d_p - d_n + _const(anchor, margin) > 0
        g = to_p / d_p[:, None] - to_n / d_n[:, None]
        return np.where(active[:, None], g, np.zeros_like(g))
    return per_row


def _shared(gradient: Callable[..., Array]) -> tuple[Callable[..., Array], Callable[..., Array]]:
    return gradient, gradient


_GRADIENTS: dict[str, tuple[Callable[..., Array] | None, Callable[..., Array]]] = {  # (naive, stable)
    "mse": _shared(lambda x, y: _const(x, 2.0) * (x - y)),
    "mae": _shared(lambda x, y: _sign(x - y)),
    "huber": _shared(_huber_grad),
    "smooth_l1": _shared(_smooth_l1_grad),
    "log_cosh": (lambda x, y: np.sinh(x - y) / np.cosh(x - y), lambda x, y: np.tanh(x - y)),
    "msle": (_msle_grad_naive, lambda x, y: _const(x, 2.0) * _log1p_difference(x, y) / (x + _const(x, 1.0))),
    "poisson_nll": (lambda x, y: _const(x, 1.0) - y / x,
                    lambda x, y: np.where(y == 0, np.ones_like(x), (x - y) / x)),
    "gaussian_nll": _shared(lambda x, y, var: (x - y) / var),
    "bce": (_bce_grad_naive, _bce_grad_stable),
    "bce_logits": (_bce_logits_grad_naive, _bce_logits_grad_stable),
    "soft_margin": (_soft_margin_grad_naive, lambda s, y: -y * _sigmoid(-y * s)),
    "focal": (None, _focal_grad),
    "hinge": _shared(lambda s, y: _active(_const(s, 1.0) - y * s, -y)),
    "squared_hinge": _shared(lambda s, y: _const(s, -2.0) * y * _hinge(s, y)),
    "margin_ranking": _shared(_margin_ranking_grad),
    "cross_entropy": (lambda z, t: _softmax_naive(z) - _one_hot(z, t), _cross_entropy_grad_stable),
    "soft_cross_entropy": (lambda z, q: _softmax_naive(z) - q, _soft_cross_entropy_grad_stable),
    "categorical_ce": (lambda p, q: -q / p, lambda p, q: -_ratio(q, p)),
    "nll": _shared(lambda l, t: -_one_hot(l, t)),
    "kl_div": (lambda q, p: -p / q, lambda q, p: -_ratio(p, q)),
    "multi_margin": _shared(_multi_margin_grad),
    "categorical_hinge": _shared(_categorical_hinge_grad),
    "cosine_similarity": (_cosine_similarity_grad_naive, _cosine_similarity_grad_stable),
    "contrastive": (_contrastive_grad(_norm_naive), _contrastive_grad(_norm_stable)),
    "triplet_margin": (_triplet_grad(_norm_naive), _triplet_grad(_norm_stable)),
    "l2_penalty": _shared(lambda w: _const(w, 2.0) * w),
    "l1_penalty": _shared(_sign),
}


def _gradient(per_item: Callable[..., Array], wide: bool) -> Impl:
    """The item gradient times the reduction's 1/N: stable applies it in the wider
    type (N itself may not fit a half format), naive multiplies by 1/N in the dtype
    as np.mean's textbook derivative does."""
    def gradient(a: dict[str, Array], reduction: str, params: dict[str, float]) -> Array:
        g = per_item(*a.values(), **params)
        if reduction == "mean":
            count = a["input"].shape[0]
            g = (g.astype(_WIDER[g.dtype]) / count).astype(g.dtype) if wide else g * _const(g, 1.0 / count)
        return g
    return gradient


class NumpyAdapter(Adapter):
    name = "numpy"
    impls = {
        "naive": {name: _impl(naive, _naive_reduce) for name, (naive, _) in _FORMULAS.items()},
        "stable": {name: _impl(stable, _wide_reduce) for name, (_, stable) in _FORMULAS.items()},
    }
    gradient_method = "numpy analytic"

    def gradient(self, spec: LossSpec, impl: str) -> Impl | None:
        naive, stable = _GRADIENTS[spec.name]
        per_item = stable if impl == "stable" else naive
        return None if per_item is None else _gradient(per_item, wide=impl == "stable")

    def stream_kernels(self, device: str, elements: int) -> dict[str, Callable[[], Any]]:
        a, b, c = (np.full(elements, v) for v in (1.0, 2.0, 0.5))
        # NumPy has no fused multiply-add ufunc: its triad is two passes (scale into a, then add).
        return {"copy": lambda: np.copyto(a, b), "scale": lambda: np.multiply(b, 3.0, out=a),
                "add": lambda: np.add(b, c, out=a),
                "triad": lambda: np.add(b, np.multiply(c, 3.0, out=a), out=a)}

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
