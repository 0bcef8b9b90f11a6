"""A float64 pre-pass that settles most items of a float16, bfloat16 or float32 set
before any ball is made.

A loss is evaluated over whole arrays in float64 with a running error bound: a
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


def exp(a: Bounded) -> Bounded:
    """|exp x - exp v| <= exp(v) (exp(e) - 1) <= 2 e exp(v) while e <= 1/2."""
    v = np.exp(a.v)
    return _rounded(v, _guarded(2 * a.e * v, a.e <= 0.5) + _libm(v))


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
