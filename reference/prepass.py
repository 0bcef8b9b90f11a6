"""A float64 pre-pass that settles most items of a float16, bfloat16 or float32 set
before any ball is made: loss values (FORMULAS) and derivatives (DERIVATIVES).

A loss (or its derivative) is evaluated over whole arrays in float64 with a running error bound: a
``Bounded`` holds values v and bounds e with |exact - v| <= e for every item.
Each step adds the error of its inputs carried through the step (through the
function's derivative, bounded on the whole interval) and its own rounding:
U |v| for +, -, *, / (IEEE round-to-nearest), LIBM |v| for numpy's exp, expm1,
log and log1p, plus the subnormal spacing for a result that underflows. A bound
is itself computed in float64, so it is grown by ``GROW`` at each step, past
the few roundings it made. Where a step's input leaves the region its derivative
bound needs (an error above half the distance to a pole), or anything overflows,
the bound becomes inf or nan and the item is left to the balls.

Such an enclosure [v - e, v + e] is far too wide for the float64 pair (hi, lo)
a float64 set keeps, but for a narrower dtype it usually lies inside one
rounding interval: the item's correct rounding and its binade (so its ulp) are
then proven without a ball (harness.measure.quantity decides that, as it owns
rounding into the dtypes).

What is not proven here: that numpy's float64 exp, expm1, log and log1p err by
at most LIBM (2**-50, 8 ulp) relative. glibc and numpy's SIMD kernels document
at most a few ulp; ``libm_checked`` measures the four against Arb on this
machine, over their whole ranges, before the pre-pass is used, and a function
found beyond 2 ulp (4 times below LIBM) turns the pre-pass off.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reference.arith import flint

U = 2.0**-53          # unit roundoff of float64
TINY = 2.0**-1074     # the absolute rounding of a result in float64's subnormals
LIBM = 2.0**-50       # assumed relative error of numpy's exp, expm1, log, log1p (8 ulp)
GROW = 1 + 2.0**-40   # a bound's own float64 roundings, with room
CHECKED_ULPS = 2      # what libm_checked accepts


@dataclass(frozen=True)
class Bounded:
    """Values v with error bounds e: the exact value of each item is within e of v."""

    v: np.ndarray
    e: np.ndarray

    def __neg__(self) -> Bounded:
        return Bounded(-self.v, self.e)

    def __add__(self, other: Bounded) -> Bounded:
        v = self.v + other.v
        return _rounded(v, self.e + other.e + U * np.abs(v))

    def __sub__(self, other: Bounded) -> Bounded:
        return self + -other

    def __mul__(self, other: Bounded) -> Bounded:
        v = self.v * other.v
        carried = np.abs(self.v) * other.e + np.abs(other.v) * self.e + self.e * other.e
        return _rounded(v, carried + U * np.abs(v))

    def __truediv__(self, other: Bounded) -> Bounded:
        v = self.v / other.v
        room = np.abs(other.v) - other.e  # the divisor's smallest magnitude
        carried = (np.abs(self.v) * other.e + np.abs(other.v) * self.e) / (np.abs(other.v) * room)
        return _rounded(v, np.where(room > 0, carried, np.inf) + U * np.abs(v))

    def half(self) -> Bounded:
        return _rounded(self.v * 0.5, self.e * 0.5)

    def magnitude(self) -> Bounded:
        return Bounded(np.abs(self.v), self.e)  # |x| is 1-Lipschitz

    def positive_part(self) -> Bounded:
        return Bounded(np.maximum(self.v, 0.0), self.e)  # so is max(x, 0)


def _rounded(v: np.ndarray, e: np.ndarray) -> Bounded:
    return Bounded(v, (e + TINY) * GROW)


def exact(x: np.ndarray | float) -> Bounded:
    x = np.asarray(x, dtype=np.float64)
    return Bounded(x, np.zeros(x.shape))


def pick(condition: np.ndarray, a: Bounded, b: Bounded) -> Bounded:
    return Bounded(np.where(condition, a.v, b.v), np.where(condition, a.e, b.e))


def _guarded(error: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """The carried error where the input's interval fits the derivative bound, else inf."""
    return np.where(fits, error, np.inf)


def _libm(v: np.ndarray) -> np.ndarray:
    """A library function's own error: LIBM relative, a few spacings in the subnormals."""
    return LIBM * np.abs(v) + 4 * TINY


def log(a: Bounded) -> Bounded:
    """|log x - log v| <= e / min(x, v) <= 2 e / v while e <= v / 2."""
    v = np.log(a.v)
    return _rounded(v, _guarded(2 * a.e / a.v, a.e <= a.v / 2) + _libm(v))


def log1p(a: Bounded) -> Bounded:
    """|log1p x - log1p v| <= 2 e / (1 + v) while e <= (1 + v) / 2."""
    v = np.log1p(a.v)
    base = 1 + a.v
    return _rounded(v, _guarded(2 * a.e / base, a.e <= base / 2) + _libm(v))


# exp of anything below this is under 2**-1075, half float64's smallest spacing
# (log(2**-1075) = -745.1..., and v + e rounds by far less than the margin).
EXP_UNDERFLOW = -746.0


def exp(a: Bounded) -> Bounded:
    """|exp x - exp v| <= exp(v) (exp(e) - 1) <= 2 e exp(v) while e <= 1/2. Where
    the whole interval lies below EXP_UNDERFLOW, 0 within TINY, however wide it is
    (a difference of huge logits, whose rounding alone exceeds 1/2)."""
    v = np.exp(a.v)
    below = a.v + a.e < EXP_UNDERFLOW
    return _rounded(np.where(below, 0.0, v),
                    np.where(below, TINY, _guarded(2 * a.e * v, a.e <= 0.5) + _libm(v)))


def expm1(a: Bounded) -> Bounded:
    """The derivative exp is at most 2 exp(v) on [v - e, v + e] while e <= 1/2."""
    v = np.expm1(a.v)
    return _rounded(v, _guarded(2 * a.e * np.exp(a.v), a.e <= 0.5) + _libm(v))


def total(a: Bounded, axis: int = -1) -> Bounded:
    """Sum along ``axis``: a float sum of n terms errs by at most (n - 1) U sum |v_i|."""
    n = a.v.shape[axis]
    v = a.v.sum(axis=axis)
    return _rounded(v, a.e.sum(axis=axis) + n * U * np.abs(a.v).sum(axis=axis) + n * TINY)


def ln2() -> Bounded:
    return Bounded(np.float64(np.log(2.0)), np.float64(LIBM))


ONE = exact(1.0)


def softplus(t: Bounded) -> Bounded:
    """log(1 + exp(t)) = max(t, 0) + log1p(exp(-|t|))."""
    return t.positive_part() + log1p(exp(-t.magnitude()))


def sigmoid(t: Bounded) -> Bounded:
    """1 / (1 + exp(-t)) with no overflow: s / (1 + s) below 0, 1 / (1 + s) above,
    s = exp(-|t|)."""
    s = exp(-t.magnitude())
    return pick(t.v < 0, s / (ONE + s), ONE / (ONE + s))


def _finite(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(np.shape(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def _where_usable(usable: np.ndarray, result: Bounded) -> Bounded:
    """Items outside the formula's domain here get no bound (the balls take them)."""
    return Bounded(np.where(usable, result.v, np.nan), np.where(usable, result.e, np.inf))


def _inside(usable: np.ndarray, x: np.ndarray, safe: float) -> np.ndarray:
    """x where usable, else a harmless stand-in (no warnings from the unused items)."""
    return np.where(usable, x, safe)


# --- the losses: the same definitions as reference.formulas, over arrays -------

def bce(p: np.ndarray, y: np.ndarray) -> Bounded:
    usable = (p > 0) & (p < 1) & np.isfinite(y)
    p, y = _inside(usable, p, 0.5), _inside(usable, y, 0.0)
    weight = exact(y)
    loss = -(weight * log(exact(p)) + (ONE - weight) * log1p(exact(-p)))
    return _where_usable(usable, loss)


def bce_logits(z: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(z, y)
    z, y = _inside(usable, z, 0.0), _inside(usable, y, 0.0)
    linear = pick(z > 0, (ONE - exact(y)) * exact(z), exact(y) * exact(-z))
    return _where_usable(usable, linear + log1p(exp(exact(-np.abs(z)))))


def soft_margin(s: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(s, y)
    s, y = _inside(usable, s, 0.0), _inside(usable, y, 0.0)
    return _where_usable(usable, softplus(-(exact(y) * exact(s))))


def log_cosh(x: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(x, y)
    x, y = _inside(usable, x, 0.0), _inside(usable, y, 0.0)
    d = (exact(x) - exact(y)).magnitude()
    far = d.v > 20  # log cosh d = d - log 2 + log1p(exp(-2d)); the same value either way
    near_d = pick(far, exact(0.0), d)
    far_d = pick(far, d, exact(21.0))
    e = expm1(near_d)
    near = log1p(e * e / (exact(2.0) * exp(near_d)))
    away = far_d - ln2() + log1p(exp(-(far_d + far_d)))
    return _where_usable(usable, pick(far, away, near))


def msle(x: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(x, y) & (x > -1) & (y > -1)
    x, y = _inside(usable, x, 0.0), _inside(usable, y, 0.0)
    gap, base = exact(x) - exact(y), ONE + exact(y)
    close = np.abs(gap.v) < base.v / 2
    d = pick(close, log1p(gap / base), log((ONE + exact(x)) / base))
    return _where_usable(usable, d * d)


def poisson_nll(x: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(x, y) & (x > 0)
    x, y = _inside(usable, x, 1.0), _inside(usable, y, 0.0)
    return _where_usable(usable, exact(x) - exact(y) * log(exact(x)))


def gaussian_nll(x: np.ndarray, y: np.ndarray, var: np.ndarray) -> Bounded:
    usable = _finite(x, y, var) & (var > 0)
    x, y, var = _inside(usable, x, 0.0), _inside(usable, y, 0.0), _inside(usable, var, 1.0)
    d = exact(x) - exact(y)
    return _where_usable(usable, (log(exact(var)) + d * d / exact(var)).half())


def focal(z: np.ndarray, y: np.ndarray, gamma: float) -> Bounded:
    """sigmoid(-t)^gamma softplus(-t), t = z for label 1 and -z otherwise."""
    usable = _finite(z, y)
    z, y = _inside(usable, z, 0.0), _inside(usable, y, 0.0)
    t = exact(np.where(y == 1, z, -z))
    weight = sigmoid(-t)
    powered = weight * weight if gamma == 2 else exp(exact(gamma) * log(weight))
    return _where_usable(usable, powered * softplus(-t))


def _rows_usable(*rows: np.ndarray) -> np.ndarray:
    return _finite(*rows).all(axis=-1)


def _lse_tail(z: np.ndarray) -> tuple[np.ndarray, Bounded]:
    """(max of each row, log1p of sum over the other classes of exp(z_k - max))."""
    top = np.argmax(z, axis=-1)
    m = np.take_along_axis(z, top[:, None], axis=-1)
    others = np.ones(z.shape, dtype=bool)
    np.put_along_axis(others, top[:, None], False, axis=-1)
    terms = exp(exact(z) - exact(m))
    return m[:, 0], log1p(total(Bounded(np.where(others, terms.v, 0.0), np.where(others, terms.e, 0.0))))


def cross_entropy(z: np.ndarray, t: np.ndarray) -> Bounded:
    """(max(z) - z_t) + log1p(sum over k != argmax of exp(z_k - max(z)))."""
    usable = _rows_usable(z) & (z.shape[-1] > 1)
    z = np.where(usable[:, None], z, 0.0)
    m, tail = _lse_tail(z)
    head = exact(m) - exact(np.take_along_axis(z, t[:, None].astype(np.int64), axis=-1)[:, 0])
    return _where_usable(usable, head + tail)


def soft_cross_entropy(z: np.ndarray, q: np.ndarray) -> Bounded:
    """sum_c q_c (max(z) - z_c) + (sum_c q_c) tail."""
    usable = _rows_usable(z, q) & (z.shape[-1] > 1)
    z, q = np.where(usable[:, None], z, 0.0), np.where(usable[:, None], q, 0.0)
    m, tail = _lse_tail(z)
    head = total(exact(q) * (exact(m[:, None]) - exact(z)))
    return _where_usable(usable, head + total(exact(q)) * tail)


def categorical_ce(p: np.ndarray, q: np.ndarray) -> Bounded:
    """-sum_c q_c log p_c, the terms with q_c = 0 left out."""
    usable = _rows_usable(p, q) & ((p > 0) | (q == 0)).all(axis=-1)
    counted = usable[:, None] & (q != 0)
    logs = log(exact(np.where(counted, p, 1.0)))
    return _where_usable(usable, -total(exact(np.where(counted, q, 0.0)) * logs))


def kl_div(q: np.ndarray, p: np.ndarray) -> Bounded:
    """sum_c p_c log(p_c / q_c): log1p((p - q) / q) where p is close to q, terms with
    p_c = 0 or p_c = q_c left out."""
    usable = _rows_usable(q, p) & (q > 0).all(axis=-1) & (p >= 0).all(axis=-1)
    counted = usable[:, None] & (p != 0) & (p != q)
    q, p = np.where(counted, q, 1.0), np.where(counted, p, 1.0)
    close = np.abs(p - q) < q / 2  # decided on exact differences of the inputs
    ratio = pick(close, log1p((exact(p) - exact(q)) / exact(q)), log(exact(p) / exact(q)))
    terms = exact(np.where(counted, p, 0.0)) * ratio
    return _where_usable(usable, total(Bounded(np.where(counted, terms.v, 0.0), np.where(counted, terms.e, 0.0))))


FORMULAS: dict[str, Callable[..., Bounded]] = {
    f.__name__: f for f in (bce, bce_logits, soft_margin, log_cosh, msle, poisson_nll, gaussian_nll, focal,
                            cross_entropy, soft_cross_entropy, categorical_ce, kl_div)
}


# --- the derivatives: the same as reference.derivatives, over arrays ------------
#
# d(loss)/d(input) of each item before the reduction divides it by the item
# count (harness.measure.quantity scales it): one value per item, or per input
# element of a row. Where reference.derivatives gives nan, no derivative or an
# exact special value, or where the bound does not prove which branch holds,
# the item is unusable here and goes to the balls.

def _proven_sign(a: Bounded) -> np.ndarray:
    """Where a's sign is proven: its bound is below its magnitude."""
    return np.abs(a.v) > a.e


def _sign_of_difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sign(x - y), exactly: a float64 subtraction keeps the sign and is 0 only for x = y."""
    return np.sign(x - y)


def _corner(h: Bounded, slope: np.ndarray) -> Bounded:
    """d/dh max(0, h) times an exact ``slope``: the slope above the corner, 0 below."""
    return exact(np.where(h.v > 0, slope, 0.0))


def _tanh(d: Bounded) -> Bounded:
    """tanh d as reference.derivatives.log_cosh takes it: expm1(2|d|) / (expm1(2|d|) + 2)
    up to |d| = 1, 1 - 2e / (1 + e) with e = exp(-2|d|) beyond; the sign put back."""
    m = d.magnitude()
    small = m.v <= 1
    near, far = pick(small, m, exact(0.5)), pick(small, exact(2.0), m)
    e = expm1(near + near)
    two = exact(2.0)
    tail = exp(-(far + far))
    value = pick(small, e / (e + two), ONE - two * tail / (ONE + tail))
    return pick(d.v > 0, value, -value)


def _clipped(x: np.ndarray, y: np.ndarray, limit: float, inside: Callable[[Bounded], Bounded],
             beyond: float) -> Bounded:
    """inside(d) where |d| < limit, sign(d) beyond past it (d = x - y), each branch
    taken where the bound proves it (at |d| = limit the two agree: the balls take it)."""
    usable = _finite(x, y)
    x, y = _inside(usable, x, 0.0), _inside(usable, y, 0.0)
    d = exact(x) - exact(y)
    gap = exact(np.full(np.shape(x), float(limit))) - d.magnitude()
    result = pick(gap.v > 0, inside(d), exact(_sign_of_difference(x, y) * beyond))
    return _where_usable(usable & _proven_sign(gap), result)


def d_mse(x: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(x, y)
    d = exact(_inside(usable, x, 1.0)) - exact(_inside(usable, y, 0.0))
    return _where_usable(usable, d + d)


def d_mae(x: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(x, y) & (x != y)
    return _where_usable(usable, exact(_sign_of_difference(_inside(usable, x, 1.0), _inside(usable, y, 0.0))))


def d_huber(x: np.ndarray, y: np.ndarray, delta: float) -> Bounded:
    return _clipped(x, y, delta, lambda d: d, delta)


def d_smooth_l1(x: np.ndarray, y: np.ndarray, beta: float) -> Bounded:
    return _clipped(x, y, beta, lambda d: d / exact(np.full(np.shape(x), float(beta))), 1.0)


def d_log_cosh(x: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(x, y) & (x != y)
    return _where_usable(usable, _tanh(exact(_inside(usable, x, 1.0)) - exact(_inside(usable, y, 0.0))))


def d_msle(x: np.ndarray, y: np.ndarray) -> Bounded:
    """2 (log1p(x) - log1p(y)) / (1 + x), the difference taken as msle's value takes it."""
    usable = _finite(x, y) & (x > -1) & (y > -1) & (x != y)
    x, y = _inside(usable, x, 1.0), _inside(usable, y, 0.0)
    gap, base = exact(x) - exact(y), ONE + exact(y)
    close = np.abs(gap.v) < base.v / 2
    d = pick(close, log1p(gap / base), log((ONE + exact(x)) / base))
    return _where_usable(usable, (d + d) / (ONE + exact(x)))


def d_poisson_nll(x: np.ndarray, y: np.ndarray) -> Bounded:
    """(x - y) / x; 1 where y = 0 (left to the balls: exact)."""
    usable = _finite(x, y) & (x != 0) & (y != 0)
    x, y = _inside(usable, x, 1.0), _inside(usable, y, 0.5)
    return _where_usable(usable, (exact(x) - exact(y)) / exact(x))


def d_gaussian_nll(x: np.ndarray, y: np.ndarray, var: np.ndarray) -> Bounded:
    usable = _finite(x, y, var) & (var != 0)
    x, y, var = _inside(usable, x, 1.0), _inside(usable, y, 0.0), _inside(usable, var, 1.0)
    return _where_usable(usable, (exact(x) - exact(y)) / exact(var))


def d_bce(p: np.ndarray, y: np.ndarray) -> Bounded:
    """(p - y) / (p (1 - p)) inside (0, 1)."""
    usable = _finite(p, y) & (p > 0) & (p < 1)
    p, y = _inside(usable, p, 0.5), _inside(usable, y, 0.0)
    return _where_usable(usable, (exact(p) - exact(y)) / (exact(p) * (ONE - exact(p))))


def d_bce_logits(z: np.ndarray, y: np.ndarray) -> Bounded:
    """(1 - y) - sigmoid(-z) for z > 0, sigmoid(z) - y otherwise."""
    usable = _finite(z, y)
    z, y = _inside(usable, z, 0.0), _inside(usable, y, 0.0)
    above = (ONE - exact(y)) - sigmoid(exact(-z))
    below = sigmoid(exact(z)) - exact(y)
    return _where_usable(usable, pick(z > 0, above, below))


def d_soft_margin(s: np.ndarray, y: np.ndarray) -> Bounded:
    """-y sigmoid(-y s)."""
    usable = _finite(s, y)
    s, y = _inside(usable, s, 0.0), _inside(usable, y, 1.0)
    return _where_usable(usable, -(exact(y) * sigmoid(-(exact(y) * exact(s)))))


def d_focal(z: np.ndarray, y: np.ndarray, gamma: float) -> Bounded:
    """With t = z for label 1 and -z otherwise: dL/dt = -sigmoid(-t)^gamma (gamma
    sigmoid(t) softplus(-t) + sigmoid(-t)), and dL/dz = +-dL/dt."""
    usable = _finite(z, y)
    z, y = _inside(usable, z, 0.0), _inside(usable, y, 0.0)
    label_one = y == 1
    t = exact(np.where(label_one, z, -z))
    other = sigmoid(-t)
    power = other * other if gamma == 2 else exp(exact(gamma) * log(other))
    slope = -(power * (exact(gamma) * sigmoid(t) * softplus(-t) + other))
    return _where_usable(usable, pick(label_one, slope, -slope))


def d_hinge(s: np.ndarray, y: np.ndarray) -> Bounded:
    usable = _finite(s, y)
    s, y = _inside(usable, s, 0.0), _inside(usable, y, 0.0)
    h = ONE - exact(y) * exact(s)
    return _where_usable(usable & _proven_sign(h), _corner(h, -y))


def d_squared_hinge(s: np.ndarray, y: np.ndarray) -> Bounded:
    """-2 y max(0, 1 - y s)."""
    usable = _finite(s, y)
    s, y = _inside(usable, s, 0.0), _inside(usable, y, 0.0)
    m = (ONE - exact(y) * exact(s)).positive_part()
    return _where_usable(usable, -(exact(y) * (m + m)))


def d_margin_ranking(x1: np.ndarray, y: np.ndarray, x2: np.ndarray, margin: float) -> Bounded:
    usable = _finite(x1, y, x2)
    x1, y, x2 = _inside(usable, x1, 0.0), _inside(usable, y, 0.0), _inside(usable, x2, 0.0)
    h = -(exact(y) * (exact(x1) - exact(x2))) + exact(np.full(np.shape(y), float(margin)))
    return _where_usable(usable & _proven_sign(h), _corner(h, -y))


def _softmax(z: np.ndarray) -> tuple[np.ndarray, Bounded, Bounded, np.ndarray]:
    """(the rows with one largest logit, softmax, 1 - softmax at the largest logit
    spread over its row, where the largest is not), as reference.derivatives takes
    it: with a = argmax and S = sum over k != a of exp(z_k - z_a), softmax_k =
    exp(z_k - z_a) / (1 + S) off a, and 1 - S / (1 + S) at a. Rows with tied largest
    logits are left to the balls."""
    width = z.shape[-1]
    finite = _rows_usable(z)
    safe = np.where(finite[:, None], z, 0.0)
    usable = finite & (width > 1) & ((safe == safe.max(axis=-1, keepdims=True)).sum(axis=-1) == 1)
    z = np.where(usable[:, None], z, np.arange(width, dtype=np.float64))  # a stand-in with one largest
    top = np.argmax(z, axis=-1)[:, None]
    others = np.ones(z.shape, dtype=bool)
    np.put_along_axis(others, top, False, axis=-1)
    terms = exp(exact(z) - exact(np.broadcast_to(np.take_along_axis(z, top, axis=-1), z.shape)))
    terms = Bounded(np.where(others, terms.v, 0.0), np.where(others, terms.e, 0.0))
    tail = total(terms)
    share = _per_element(tail / (ONE + tail), z.shape)
    return usable, pick(others, terms / _per_element(ONE + tail, z.shape), ONE - share), share, others


def _per_element(a: Bounded, shape: tuple[int, ...]) -> Bounded:
    """A per-row value repeated over its row."""
    return Bounded(np.broadcast_to(a.v[:, None], shape), np.broadcast_to(a.e[:, None], shape))


def _rows(usable: np.ndarray, result: Bounded) -> Bounded:
    return _where_usable(np.broadcast_to(usable[:, None], result.v.shape), result)


def d_cross_entropy(z: np.ndarray, t: np.ndarray) -> Bounded:
    """softmax(z) - onehot(t); at the largest logit minus one is -S / (1 + S) exactly."""
    target = t.astype(np.int64)
    usable, softmax, share, others = _softmax(z)
    usable &= (target >= 0) & (target < z.shape[-1])
    is_target = np.zeros(z.shape, dtype=bool)
    np.put_along_axis(is_target, np.where(usable, target, 0)[:, None], True, axis=-1)
    return _rows(usable, pick(is_target, pick(others, softmax - ONE, -share), softmax))


def d_soft_cross_entropy(z: np.ndarray, q: np.ndarray) -> Bounded:
    """(sum_c q_c) softmax_j - q_j."""
    usable, softmax, _, _ = _softmax(z)
    usable &= _rows_usable(q)
    q = np.where(usable[:, None], q, 0.0)
    return _rows(usable, _per_element(total(exact(q)), z.shape) * softmax - exact(q))


def _minus_ratios(weight: np.ndarray, value: np.ndarray) -> Bounded:
    """-weight / value, rows with every value positive and every weight non-zero
    (a zero weight's exact zero is the balls')."""
    usable = _rows_usable(weight, value) & (value > 0).all(axis=-1) & (weight != 0).all(axis=-1)
    weight, value = np.where(usable[:, None], weight, 1.0), np.where(usable[:, None], value, 1.0)
    return _rows(usable, -(exact(weight) / exact(value)))


def d_categorical_ce(p: np.ndarray, q: np.ndarray) -> Bounded:
    return _minus_ratios(q, p)


def d_kl_div(q: np.ndarray, p: np.ndarray) -> Bounded:
    return _minus_ratios(p, q)


DERIVATIVES: dict[str, Callable[..., Bounded]] = {
    f.__name__.removeprefix("d_"): f for f in (d_mse, d_mae, d_huber, d_smooth_l1, d_log_cosh, d_msle, d_poisson_nll,
                                              d_gaussian_nll, d_bce, d_bce_logits, d_soft_margin, d_focal, d_hinge,
                                              d_squared_hinge, d_margin_ranking, d_cross_entropy,
                                              d_soft_cross_entropy, d_categorical_ce, d_kl_div)
}


def enclosure(result: Bounded) -> tuple[np.ndarray, np.ndarray]:
    """[lower, upper] of each exact value: v -+ e, each a float64 step further out
    (v - e and v + e round by less than one step)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.nextafter(result.v - result.e, -np.inf), np.nextafter(result.v + result.e, np.inf)


# --- the one assumption, measured ----------------------------------------------

def _samples(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261130)
    wide = np.ldexp(rng.uniform(0.5, 1.0, count), rng.integers(-1020, 1020, count))
    near_one = 1 + rng.uniform(-2.0**-20, 2.0**-20, count)
    return {
        "log": np.concatenate([wide, near_one, rng.uniform(0.0, 4.0, count)]),
        "log1p": np.concatenate([np.ldexp(rng.uniform(-1, 1, count), rng.integers(-60, 0, count)),
                                 rng.uniform(-0.999, 0.0, count), wide]),
        "exp": np.concatenate([rng.uniform(-740, 709, count), rng.uniform(-1, 1, count)]),
        "expm1": np.concatenate([rng.uniform(-50, 709, count),
                                 np.ldexp(rng.uniform(-1, 1, count), rng.integers(-60, 0, count))]),
    }


def worst_ulps(count: int = 400) -> dict[str, float]:
    """Each function's largest error, in float64 ulps of the exact value, on ``count``
    points per range (Arb at 128 bits, its radius counted against the function)."""
    worst = {}
    previous = flint.ctx.prec
    flint.ctx.prec = 128
    try:
        for name, points in _samples(count).items():
            values = getattr(np, name)(points)
            largest = 0.0
            for x, v in zip(points.tolist(), values.tolist()):
                if not np.isfinite(v) or v == 0:
                    continue
                exact_value = getattr(flint.arb(x), name)()
                distance = abs(exact_value - flint.arb(v))
                spacing = flint.arb(2.0) ** max(int(np.frexp(v)[1]) - 53, -1074)
                largest = max(largest, float((distance / spacing).upper()))
            worst[name] = largest
    finally:
        flint.ctx.prec = previous
    return worst


@functools.lru_cache(maxsize=1)
def libm_checked() -> bool:
    """Whether every function the pre-pass uses is within CHECKED_ULPS here (never,
    where python-flint is missing to measure them: the balls settle everything)."""
    return flint is not None and all(u <= CHECKED_ULPS for u in worst_ulps().values())
