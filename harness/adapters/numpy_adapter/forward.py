"""NumPy loss formulas, one value per element or row, in the array's dtype:
(naive, stable) per loss in FORMULAS. Every constant and parameter is cast to
the array's dtype first (ml_dtypes promotes bfloat16 with a Python float to float32)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

WIDER = {np.dtype(np.float16): np.float32, np.dtype(ml_dtypes.bfloat16): np.float32,
         np.dtype(np.float32): np.float64, np.dtype(np.float64): np.float64}

Array = np.ndarray


def const(like: Array, value: float) -> Any:
    """A scalar in the array's dtype (a Python float would promote bfloat16 to float32,
    a NumPy float64 scalar any dtype to float64)."""
    return like.dtype.type(value)


# --- element-wise formulas --------------------------------------------------

def _mse(x: Array, y: Array) -> Array:
    return (x - y) ** 2


def _mae(x: Array, y: Array) -> Array:
    return np.abs(x - y)


def _huber(x: Array, y: Array, delta: float) -> Array:
    d = np.abs(x - y)
    delta_, half = const(d, delta), const(d, 0.5)
    return np.where(d <= delta_, half * d * d, delta_ * (d - half * delta_))


def _smooth_l1(x: Array, y: Array, beta: float) -> Array:
    d = np.abs(x - y)
    beta_, half = const(d, beta), const(d, 0.5)
    return np.where(d < beta_, half * d * d / beta_, d - half * beta_)


def _log_cosh_naive(x: Array, y: Array) -> Array:
    return np.log(np.cosh(x - y))


def _log_cosh_stable(x: Array, y: Array) -> Array:
    d = np.abs(x - y)
    two = const(d, 2.0)
    small = np.log1p(two * np.sinh(d / 2) ** 2)  # no cancellation near 0
    large = d + np.log1p(np.exp(-two * d)) - const(d, math.log(2.0))  # no overflow
    return np.where(d < 1, small, large)


def _msle_naive(x: Array, y: Array) -> Array:
    one = const(x, 1.0)
    return (np.log(x + one) - np.log(y + one)) ** 2


def _log1p_difference(x: Array, y: Array) -> Array:
    # log1p(x) - log1p(y) = log1p((x - y) / (1 + y)) near x = y (the difference of
    # logs cancels there), log((1 + x) / (1 + y)) away from it (log1p(u) loses u near -1).
    one = const(x, 1.0)
    u = (x - y) / (one + y)
    return np.where(np.abs(u) < const(x, 0.5), np.log1p(u), np.log((one + x) / (one + y)))


def _msle_stable(x: Array, y: Array) -> Array:
    d = _log1p_difference(x, y)
    return d * d


def _poisson_nll_naive(x: Array, y: Array) -> Array:
    return x - y * np.log(x)


def _poisson_nll_stable(x: Array, y: Array) -> Array:
    return x - _xlog(y, np.log(x))


def _gaussian_nll_naive(x: Array, y: Array, var: Array) -> Array:
    return const(x, 0.5) * (np.log(var) + (x - y) ** 2 / var)


def _gaussian_nll_stable(x: Array, y: Array, var: Array) -> Array:
    scaled = (x - y) / np.sqrt(var)  # (x - y)^2 alone overflows while the ratio is finite
    return const(x, 0.5) * (np.log(var) + scaled * scaled)


def _bce_naive(p: Array, y: Array) -> Array:
    one = const(p, 1.0)
    return -(y * np.log(p) + (one - y) * np.log(one - p))


def _xlog(weight: Array, log_value: Array) -> Array:
    """weight * log_value with 0 * log 0 = 0."""
    return np.where(weight == 0, np.zeros_like(log_value), weight * log_value)


def _bce_stable(p: Array, y: Array) -> Array:
    return -(_xlog(y, np.log(p)) + _xlog(const(y, 1.0) - y, np.log1p(-p)))


def _bce_logits_naive(z: Array, y: Array) -> Array:
    one = const(z, 1.0)
    return _bce_naive(one / (one + np.exp(-z)), y)


def _bce_logits_stable(z: Array, y: Array) -> Array:
    # The usual max(z, 0) - z y cancels for large z and y near 1; (1 - y) z does not
    # (1 - y is exact for y >= 1/2), nor does y |z| for z <= 0.
    linear = np.where(z > 0, (const(y, 1.0) - y) * z, y * -z)
    return linear + np.log1p(np.exp(-np.abs(z)))


def _softplus(t: Array) -> Array:
    return np.maximum(t, const(t, 0.0)) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t: Array) -> Array:
    one, e = const(t, 1.0), np.exp(-np.abs(t))
    return np.where(t >= 0, one / (one + e), e / (one + e))


def _soft_margin_naive(s: Array, y: Array) -> Array:
    return np.log(const(s, 1.0) + np.exp(-y * s))


def _soft_margin_stable(s: Array, y: Array) -> Array:
    return _softplus(-y * s)


def _focal_naive(z: Array, y: Array, gamma: float) -> Array:
    one = const(z, 1.0)
    p = one / (one + np.exp(-z))
    p_t = np.where(y == 1, p, one - p)
    return -((one - p_t) ** const(z, gamma)) * np.log(p_t)


def _focal_stable(z: Array, y: Array, gamma: float) -> Array:
    t = np.where(y == 1, z, -z)  # p_t = sigmoid(t)
    return _sigmoid(-t) ** const(z, gamma) * _softplus(-t)


def _hinge(s: Array, y: Array) -> Array:
    return np.maximum(const(s, 1.0) - y * s, const(s, 0.0))


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
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True, dtype=WIDER[z.dtype])).astype(z.dtype)


def _cross_entropy_naive(input: Array, target: Array) -> Array:
    return -np.log(_softmax_naive(input)[_rows(input), target])


def _cross_entropy_stable(input: Array, target: Array) -> Array:
    return -_log_softmax_stable(input)[_rows(input), target]


def _soft_cross_entropy_naive(input: Array, target: Array) -> Array:
    return -np.sum(target * np.log(_softmax_naive(input)), axis=1)


def _soft_cross_entropy_stable(input: Array, target: Array) -> Array:
    terms = _xlog(target, _log_softmax_stable(input))
    return -np.sum(terms, axis=1, dtype=WIDER[input.dtype]).astype(input.dtype)


def _nll(input: Array, target: Array) -> Array:
    return -input[_rows(input), target]


def _categorical_ce_naive(input: Array, target: Array) -> Array:
    return -np.sum(target * np.log(input), axis=1)


def _categorical_ce_stable(input: Array, target: Array) -> Array:
    return -np.sum(_xlog(target, np.log(input)), axis=1, dtype=WIDER[input.dtype]).astype(input.dtype)


def _kl_div_naive(input: Array, target: Array) -> Array:
    return np.sum(target * np.log(target / input), axis=1)


def _kl_div_stable(input: Array, target: Array) -> Array:
    terms = _xlog(target, np.log(target) - np.log(input))
    return np.sum(terms, axis=1, dtype=WIDER[input.dtype]).astype(input.dtype)


def _margins(s: Array, t: Array, margin: float) -> Array:
    """max(0, margin - s_t + s_j) for every j, zero at j = t."""
    positive = s[_rows(s), t][:, None]
    m = np.maximum(const(s, margin) - positive + s, const(s, 0.0))
    m[_rows(s), t] = 0
    return m


def _multi_margin_naive(input: Array, target: Array, margin: float) -> Array:
    return np.sum(_margins(input, target, margin), axis=1) / input.shape[1]


def _multi_margin_stable(input: Array, target: Array, margin: float) -> Array:
    total = np.sum(_margins(input, target, margin), axis=1, dtype=WIDER[input.dtype])
    return (total / input.shape[1]).astype(input.dtype)


def _categorical_hinge(input: Array, target: Array) -> Array:
    positive = input[_rows(input), target]
    others = input.copy()
    others[_rows(input), target] = -np.inf
    return np.maximum(const(input, 1.0) + np.max(others, axis=1) - positive, const(input, 0.0))


def _norm_naive(diff: Array) -> Array:
    return np.sqrt(np.sum(diff**2, axis=1))


def _norm_stable(diff: Array) -> Array:
    """Row norms scaled by the row's largest magnitude (no overflow or underflow of
    the squares), accumulated in the wider type."""
    scale = np.max(np.abs(diff), axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, np.ones_like(scale))
    return (scale[:, 0] * np.sqrt(np.sum((diff / scale) ** 2, axis=1, dtype=WIDER[diff.dtype]))).astype(diff.dtype)


def _contrastive_naive(input: Array, target: Array, input2: Array, margin: float) -> Array:
    d = _norm_naive(input - input2)
    gap = np.maximum(const(d, margin) - d, const(d, 0.0))
    return (target * d**2 + (const(d, 1.0) - target) * gap**2) / 2


def _contrastive_stable(input: Array, target: Array, input2: Array, margin: float) -> Array:
    d = _norm_stable(input - input2)
    gap = np.maximum(const(d, margin) - d, const(d, 0.0))
    return (_xlog(target, d * d) + _xlog(const(d, 1.0) - target, gap * gap)) / 2


def _cosine_similarity_naive(input: Array, target: Array) -> Array:
    return -np.sum(input * target, axis=1) / (_norm_naive(input) * _norm_naive(target))


def _cosine_similarity_stable(input: Array, target: Array) -> Array:
    # Each row divided by its norm first: the product of the norms cannot overflow.
    unit_x = input / _norm_stable(input)[:, None]
    unit_y = target / _norm_stable(target)[:, None]
    return -np.sum(unit_x * unit_y, axis=1, dtype=WIDER[input.dtype]).astype(input.dtype)


def _triplet(norm: Callable[[Array], Array]) -> Callable[..., Array]:
    def per_row(anchor: Array, positive: Array, negative: Array, margin: float) -> Array:
        gap = norm(anchor - positive) - norm(anchor - negative) + const(anchor, margin)
        return np.maximum(gap, const(anchor, 0.0))
    return per_row


def _margin_ranking(x1: Array, y: Array, x2: Array, margin: float) -> Array:
    return np.maximum(-y * (x1 - x2) + const(x1, margin), const(x1, 0.0))


def _l2_penalty_naive(w: Array) -> Array:
    return w**2


def _l2_penalty_stable(w: Array) -> Array:
    wide = w.astype(WIDER[w.dtype])  # squares of half values cannot overflow there
    return wide * wide


FORMULAS: dict[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
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

