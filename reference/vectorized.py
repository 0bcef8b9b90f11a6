"""The rational element-wise losses over whole arrays, exactly, in float64.

Error-free transformations give each item's exact value as hi + lo with hi the
correctly rounded float64 and lo the exact remainder: TwoSum (Knuth) makes
a - b = s + e exactly, so a difference is exact where e is 0; Dekker's
TwoProduct makes a * b = p + e exactly. Both need IEEE round-to-nearest and no
overflow or underflow, which the range checks below guarantee (magnitudes
between 2**-480 and 2**500 before a product). Where such an item's pair is a
float64 pair (p, e) with e the exact remainder, it is the stored pair itself
(reference.certify.split), the exact value being a point: no enclosure needed.
Items outside these ranges are left to the certified per-item path (``ok``
False); the formulas in reference.formulas stay the definition, and the tests
check both paths give the same pair on every loss, regime and dtype.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

# Veltkamp's splitting constant for float64: 2**27 + 1.
_SPLITTER = 134217729.0
_SMALL, _LARGE = 2.0**-480, 2.0**500

Exact = tuple[np.ndarray, np.ndarray, np.ndarray]  # (hi, lo, ok)


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, e) with s = fl(a + b) and a + b = s + e exactly (finite inputs, no overflow)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, e) with p = fl(a b) and a b = p + e exactly, for |a|, |b| in [2**-480,
    2**500] (or zero): Dekker's product with Veltkamp's split."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLITTER * a
    high = c - (c - a)
    return high, a - high


def _in_range(*values: np.ndarray) -> np.ndarray:
    """Zero, or a magnitude where the products above are exact."""
    ok = np.ones(values[0].shape, dtype=bool)
    for v in values:
        magnitude = np.abs(v)
        ok &= (magnitude == 0) | ((magnitude >= _SMALL) & (magnitude <= _LARGE))
    return ok


def _difference(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x - y, whether it is exact and finite)."""
    s, e, finite = _pair_difference(x, y)
    return s, finite & (e == 0)


def _pair_difference(x: np.ndarray, y: np.ndarray) -> Exact:
    """x - y as the pair (s, e): s the correctly rounded difference, e the exact
    remainder; and whether it is finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        s, e = two_sum(x, -y)
    return s, e, np.isfinite(s) & np.isfinite(e)


def _positive_part(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(0, s + e) for a pair: s = RN(v) has v's sign (and is 0 only for v = 0)."""
    return np.maximum(s, 0.0), np.where(s > 0, e, 0.0)


def _square(d: np.ndarray, ok: np.ndarray) -> Exact:
    ok = ok & _in_range(d)
    safe = np.where(ok, d, 0.0)
    p, e = two_product(safe, safe)
    return p, e, ok


def mse(x: np.ndarray, y: np.ndarray) -> Exact:
    return _square(*_difference(x, y))


def mae(x: np.ndarray, y: np.ndarray) -> Exact:
    s, e, ok = _pair_difference(x, y)
    return np.abs(s), np.where(s < 0, -e, e), ok


def huber(x: np.ndarray, y: np.ndarray, delta: float) -> Exact:
    d, ok = _difference(x, y)
    a = np.abs(d)
    p, e, ok_square = _square(a, ok)
    with np.errstate(invalid="ignore", over="ignore"):
        t, exact_t = _difference(a, np.full_like(a, delta / 2))
    ok_linear = ok & exact_t & _in_range(t) & _in_range(np.full_like(a, delta))
    lp, le = two_product(np.full_like(a, delta), np.where(ok_linear, t, 0.0))
    small = a <= delta
    return (np.where(small, p / 2, lp), np.where(small, e / 2, le),
            np.where(small, ok_square & (np.abs(p) >= 2.0**-900), ok_linear))


def smooth_l1(x: np.ndarray, y: np.ndarray, beta: float) -> Exact:
    d, ok = _difference(x, y)
    a = np.abs(d)
    p, e, ok_square = _square(a, ok)
    scale = 0.5 / beta  # exact only for a power-of-two beta, and kept near 1 so e * scale stays exact
    power_of_two = np.frexp(beta)[0] == 0.5 and 2.0**-10 <= scale <= 2.0**10
    t, exact_t = _difference(a, np.full_like(a, beta / 2))
    small = a < beta
    return (np.where(small, p * scale, t), np.where(small, e * scale, 0.0),
            np.where(small, ok_square & power_of_two & (np.abs(p) >= 2.0**-900) & (np.abs(p * scale) <= _LARGE),
                     ok & exact_t))


def _hinge(s: np.ndarray, y: np.ndarray) -> Exact:
    """max(0, 1 - y s) for labels +-1 as a pair, and whether it is one."""
    h, e, ok = _pair_difference(np.ones_like(s), y * s)
    return *_positive_part(h, e), ok & (np.abs(y) == 1)


def hinge(s: np.ndarray, y: np.ndarray) -> Exact:
    return _hinge(s, y)


def squared_hinge(s: np.ndarray, y: np.ndarray) -> Exact:
    h, e, ok = _hinge(s, y)
    return _square(h, ok & (e == 0))


def margin_ranking(x1: np.ndarray, y: np.ndarray, x2: np.ndarray, margin: float) -> Exact:
    d, ok = _difference(x1, x2)
    v, exact_v = _difference(np.full_like(d, margin), y * d)  # -y (x1 - x2) + margin
    return np.maximum(v, 0.0), np.zeros_like(v), ok & exact_v & (np.abs(y) == 1)


def l2_penalty(w: np.ndarray) -> Exact:
    return _square(w, np.isfinite(w))


def l1_penalty(w: np.ndarray) -> Exact:
    return np.abs(w), np.zeros_like(w), np.isfinite(w)


def _without_negative_zeros(loss: Callable[..., Exact]) -> Callable[..., Exact]:
    """The loss with -0.0 made +0.0 (the reference has no signed zero)."""
    def evaluate(*args: np.ndarray, **params: float) -> Exact:
        hi, lo, ok = loss(*args, **params)
        return hi + 0.0, lo + 0.0, ok
    return evaluate


EXACT: Mapping[str, Callable[..., Exact]] = {
    f.__name__: _without_negative_zeros(f)
    for f in (mse, mae, huber, smooth_l1, hinge, squared_hinge, margin_ranking, l2_penalty, l1_penalty)
}
