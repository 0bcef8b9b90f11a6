"""NumPy analytic gradients: d(item)/d(input), shaped like input, (naive, stable)
per loss in GRADIENTS (naive None where the textbook gradient is not simple)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.adapters.numpy_adapter.forward import (
    WIDER, Array, _hinge, _log1p_difference, _log_softmax_stable, _margins, _norm_naive, _norm_stable, _rows,
    _sigmoid, _softmax_naive, _softplus, const,
)

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
    return np.clip(x - y, -const(x, delta), const(x, delta))


def _smooth_l1_grad(x: Array, y: Array, beta: float) -> Array:
    d = x - y
    return np.where(np.abs(d) < const(d, beta), d / const(d, beta), _sign(d))


def _msle_grad_naive(x: Array, y: Array) -> Array:
    one = const(x, 1.0)
    return const(x, 2.0) * (np.log(x + one) - np.log(y + one)) / (x + one)


def _bce_grad_naive(p: Array, y: Array) -> Array:
    one = const(p, 1.0)
    return -y / p + (one - y) / (one - p)


def _bce_grad_stable(p: Array, y: Array) -> Array:
    # (p - y) / (p (1 - p)): one cancellation-free numerator; at p = 0 or 1 the
    # separate terms with zero weights kept zero.
    one = const(p, 1.0)
    inside = (p > 0) & (p < one)
    combined = (p - y) / (p * (one - p))
    return np.where(inside, combined, _ratio(one - y, one - p) - _ratio(y, p))


def _bce_logits_grad_naive(z: Array, y: Array) -> Array:
    one = const(z, 1.0)
    return one / (one + np.exp(-z)) - y


def _bce_logits_grad_stable(z: Array, y: Array) -> Array:
    # sigmoid(z) - y, written as (1 - y) - sigmoid(-z) for z >= 0: for y = 1 that is
    # exactly -sigmoid(-z), where sigmoid(z) - 1 would round to 0.
    return np.where(z >= 0, (const(z, 1.0) - y) - _sigmoid(-z), _sigmoid(z) - y)


def _soft_margin_grad_naive(s: Array, y: Array) -> Array:
    e = np.exp(-y * s)
    return -y * e / (const(s, 1.0) + e)


def _focal_grad(z: Array, y: Array, gamma: float) -> Array:
    # With t = +-z: dL/dt = -sigmoid(-t)^gamma (gamma sigmoid(t) softplus(-t) + sigmoid(-t)).
    t = np.where(y == 1, z, -z)
    other = _sigmoid(-t)
    slope = -(other ** const(z, gamma)) * (const(z, gamma) * _sigmoid(t) * _softplus(-t) + other)
    return np.where(y == 1, slope, -slope)


def _margin_ranking_grad(x1: Array, y: Array, x2: Array, margin: float) -> Array:
    return _active(-y * (x1 - x2) + const(x1, margin), -y)


def _one_hot(like: Array, t: Array) -> Array:
    hot = np.zeros_like(like)
    hot[_rows(like), t] = 1
    return hot


def _cross_entropy_grad_stable(input: Array, target: Array) -> Array:
    # softmax - onehot, the target's entry as minus the others' (wide) sum:
    # 1 - softmax_t rounds to 0 for a confident prediction, the others' sum does not.
    g = np.exp(_log_softmax_stable(input))
    g[_rows(input), target] = 0
    g[_rows(input), target] = -np.sum(g, axis=1, dtype=WIDER[input.dtype]).astype(input.dtype)
    return g


def _soft_cross_entropy_grad_stable(input: Array, target: Array) -> Array:
    total = np.sum(target, axis=1, keepdims=True, dtype=WIDER[input.dtype]).astype(input.dtype)
    return total * np.exp(_log_softmax_stable(input)) - target


def _multi_margin_grad(input: Array, target: Array, margin: float) -> Array:
    count = const(input, input.shape[1])
    g = np.where(_margins(input, target, margin) > 0, const(input, 1.0) / count, const(input, 0.0))
    g[_rows(input), target] = -np.sum(g, axis=1)
    return g


def _categorical_hinge_grad(input: Array, target: Array) -> Array:
    positive = input[_rows(input), target]
    others = input.copy()
    others[_rows(input), target] = -np.inf
    runner_up = np.argmax(others, axis=1)
    active = (const(input, 1.0) + others[_rows(input), runner_up] - positive > 0).astype(input.dtype)
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
    cosine = np.sum(u * v, axis=1, keepdims=True, dtype=WIDER[input.dtype]).astype(input.dtype)
    return -(v - cosine * u) / nx


def _contrastive_grad(norm: Callable[[Array], Array]) -> Callable[..., Array]:
    def per_row(input: Array, target: Array, input2: Array, margin: float) -> Array:
        diff = input - input2
        d = norm(diff)
        gap = np.maximum(const(d, margin) - d, const(d, 0.0))
        pull = np.where(gap > 0, (const(d, 1.0) - target) * gap / d, np.zeros_like(d))
        return diff * (target - pull)[:, None]
    return per_row


def _triplet_grad(norm: Callable[[Array], Array]) -> Callable[..., Array]:
    def per_row(anchor: Array, positive: Array, negative: Array, margin: float) -> Array:
        to_p, to_n = anchor - positive, anchor - negative
        d_p, d_n = norm(to_p), norm(to_n)
        active = d_p - d_n + const(anchor, margin) > 0
        g = to_p / d_p[:, None] - to_n / d_n[:, None]
        return np.where(active[:, None], g, np.zeros_like(g))
    return per_row


def _shared(gradient: Callable[..., Array]) -> tuple[Callable[..., Array], Callable[..., Array]]:
    return gradient, gradient


GRADIENTS: dict[str, tuple[Callable[..., Array] | None, Callable[..., Array]]] = {  # (naive, stable)
    "mse": _shared(lambda x, y: const(x, 2.0) * (x - y)),
    "mae": _shared(lambda x, y: _sign(x - y)),
    "huber": _shared(_huber_grad),
    "smooth_l1": _shared(_smooth_l1_grad),
    "log_cosh": (lambda x, y: np.sinh(x - y) / np.cosh(x - y), lambda x, y: np.tanh(x - y)),
    "msle": (_msle_grad_naive, lambda x, y: const(x, 2.0) * _log1p_difference(x, y) / (x + const(x, 1.0))),
    "poisson_nll": (lambda x, y: const(x, 1.0) - y / x,
                    lambda x, y: np.where(y == 0, np.ones_like(x), (x - y) / x)),
    "gaussian_nll": _shared(lambda x, y, var: (x - y) / var),
    "bce": (_bce_grad_naive, _bce_grad_stable),
    "bce_logits": (_bce_logits_grad_naive, _bce_logits_grad_stable),
    "soft_margin": (_soft_margin_grad_naive, lambda s, y: -y * _sigmoid(-y * s)),
    "focal": (None, _focal_grad),
    "hinge": _shared(lambda s, y: _active(const(s, 1.0) - y * s, -y)),
    "squared_hinge": _shared(lambda s, y: const(s, -2.0) * y * _hinge(s, y)),
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
    "l2_penalty": _shared(lambda w: const(w, 2.0) * w),
    "l1_penalty": _shared(_sign),
}

