"""Analytic derivatives of the canonical losses with respect to ``input``.

Each function sits beside its loss in reference.formulas (same name, same
arguments, the arithmetic ``c`` first) and returns one item's derivative: a
tuple with one component for an element-wise loss, one per input element of
the row for a row-wise loss, each an exact mpf or an enclosure. The reduction
is applied by the caller (reference.gradients): the mean divides by the item
count.

The formulas are rearranged like the losses themselves so that no step cancels
(exact numerators, 1 - sigmoid(z) as sigmoid(-z), softmax_t - 1 as minus the
other classes' sum).

A component is ``UNDEFINED`` (None) where the loss has no derivative at these
exact inputs (|d| at d = 0, the corner of max(0, h) at h = 0, a norm at the zero
vector): frameworks return a subgradient there by convention, and the harness
does not judge a convention as an error. An item holding an infinite argument
has no derivative either (its loss is not differentiable in the reals); an item
holding a nan has nan derivatives, as its loss is nan.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from collections.abc import Callable, Sequence
from typing import Any

import mpmath

from reference.arith import Arithmetic, Enclosure, Shifted, as_value, quotient, shift
from reference.formulas import log1p_difference, sigmoid, sigmoid_value, softplus_value, squared_distance, total_of
from reference.mpexact import (
    INF, NAN, ONE, ZERO, add, exact, exact_total, is_nan, max_or_zero, mul, neg, rational, sub, to_fraction,
)

mpf = mpmath.mpf
UNDEFINED = None
Component = Any  # an exact mpf, an enclosure, or None (no derivative)
Derivative = Callable[..., tuple[Component, ...]]


def _scalars(item: Sequence[Any]) -> list[mpf]:
    """The real arguments of an item, rows flattened (class indices are ints)."""
    return [v for arg in item for v in (arg if isinstance(arg, list) else [arg]) if isinstance(v, mpf)]


def differentiable(function: Callable[..., Sequence[Component]]) -> Derivative:
    """Wrap a derivative written for finite arguments: nan anywhere in the item gives
    nan components, an infinity gives undefined ones."""
    @functools.wraps(function)
    def derivative(c: Arithmetic, *item: Any, **params: mpf) -> tuple[Component, ...]:
        width = len(item[0]) if isinstance(item[0], list) else 1
        values = _scalars(item)
        if any(is_nan(v) for v in values):
            return (NAN,) * width
        if not all(mpmath.isfinite(v) for v in values):
            return (UNDEFINED,) * width
        return tuple(function(c, *item, **params))
    return derivative


def _negated(c: Arithmetic, v: Any) -> Any:
    """-v of a result: an enclosure's ends swap."""
    if isinstance(v, Enclosure):
        return Enclosure(neg(v.upper), neg(v.lower))
    return -v


def _sign(d: mpf) -> Component:
    """d/dd |d|: undefined at 0."""
    return UNDEFINED if d == 0 else (ONE if d > 0 else -ONE)


def _step(h: mpf, slope: mpf) -> Component:
    """d/dh max(0, h) times ``slope``: undefined at the corner h = 0."""
    if h == 0:
        return UNDEFINED
    return slope if h > 0 else ZERO


def _divide(a: mpf, b: mpf) -> Component:
    """a / b for b >= 0 in the extended reals: a / +0 is +-inf, 0 / 0 is nan."""
    if b != 0:
        return ZERO if a == 0 else quotient(a, b)
    return NAN if a == 0 else (INF if a > 0 else -INF)


def _twice(a: mpf) -> mpf:
    return mpmath.ldexp(a, 1)


# --- element-wise losses --------------------------------------------------------

@exact
@differentiable
def mse(c: Arithmetic, x: mpf, y: mpf) -> tuple[Component, ...]:
    return (_twice(sub(x, y)),)


@exact
@differentiable
def mae(c: Arithmetic, x: mpf, y: mpf) -> tuple[Component, ...]:
    return (_sign(sub(x, y)),)


@exact
@differentiable
def huber(c: Arithmetic, x: mpf, y: mpf, delta: mpf) -> tuple[Component, ...]:
    d = sub(x, y)  # continuous at |d| = delta: the loss is C1
    if abs(d) <= delta:
        return (d,)
    return (delta if d > 0 else neg(delta),)


@differentiable
def smooth_l1(c: Arithmetic, x: mpf, y: mpf, beta: mpf) -> tuple[Component, ...]:
    d = sub(x, y)
    if abs(d) < beta:
        return (_divide(d, beta),)  # exact when beta is a power of two
    return (ONE if d > 0 else -ONE,)


@differentiable
def log_cosh(c: Arithmetic, x: mpf, y: mpf) -> tuple[Component, ...]:
    """tanh(d) = expm1(2d) / (expm1(2d) + 2): no cancellation at small d."""
    d = sub(x, y)
    if d == 0:
        return (ZERO,)
    sign, magnitude = (-1, neg(d)) if d < 0 else (1, d)
    if magnitude > 1:
        # tanh |d| = 1 - 2 e / (1 + e), e = exp(-2|d|): the exact 1 and a tail
        e = c.exp_of(neg(add(magnitude, magnitude)))
        rest = 2 * e / (1 + e)
        return (shift(c, ONE, -rest) if sign > 0 else shift(c, -ONE, rest),)
    e = c.expm1(c.num(add(magnitude, magnitude)))
    value = e / (e + 2)
    return (value if sign > 0 else -value,)


@differentiable
def msle(c: Arithmetic, x: mpf, y: mpf) -> tuple[Component, ...]:
    """2 (log1p(x) - log1p(y)) / (1 + x), the log difference free of cancellation."""
    if x <= -1 or y <= -1:
        return (NAN,) if x < -1 or y < -1 else (UNDEFINED,)
    d = log1p_difference(c, x, y)
    if d is ZERO:
        return (ZERO,)
    return (2 * d / c.num(add(ONE, x)),)


@differentiable
def poisson_nll(c: Arithmetic, x: mpf, y: mpf) -> tuple[Component, ...]:
    """1 - y / x = (x - y) / x, the numerator exact; 1 where y = 0 (0 log x = 0)."""
    if y == 0:
        return (ONE,)
    return (_divide(sub(x, y), x),)


@differentiable
def gaussian_nll(c: Arithmetic, x: mpf, y: mpf, var: mpf) -> tuple[Component, ...]:
    return (_divide(sub(x, y), var),)


@differentiable
def bce(c: Arithmetic, p: mpf, y: mpf) -> tuple[Component, ...]:
    """-y / p + (1 - y) / (1 - p) = (p - y) / (p (1 - p)): exact numerator and
    denominator, one rounding. At p = 0 or 1 a zero weight keeps its term zero."""
    if p < 0 or p > 1:
        return (NAN,)
    q = sub(ONE, p)
    if p != 0 and q != 0:
        return (_divide(sub(p, y), mul(p, q)),)
    from_y = ZERO if y == 0 else neg(_divide(y, p))  # an infinity here, or y itself at p = 1
    from_one_minus_y = ZERO if y == 1 else _divide(sub(ONE, y), q)
    return (add(from_y, from_one_minus_y),)  # both infinite or zero here


@differentiable
def bce_logits(c: Arithmetic, z: mpf, y: mpf) -> tuple[Component, ...]:
    """sigmoid(z) - y: an exact head and a small tail, (1 - y) - sigmoid(-z) for
    z > 0 and -y + sigmoid(z) otherwise (for y = 1 and z > 0 that is
    -sigmoid(-z), which does not cancel)."""
    if z > 0:
        return (shift(c, sub(ONE, y), -sigmoid_value(c, neg(z))),)
    return (shift(c, neg(y), sigmoid_value(c, z)),)


@differentiable
def soft_margin(c: Arithmetic, s: mpf, y: mpf) -> tuple[Component, ...]:
    value = sigmoid(c, neg(mul(y, s)))
    if y == 1 or y == -1:
        return (_negated(c, value) if y == 1 else value,)
    return (c.num(neg(y)) * as_value(c, value),)


@differentiable
def focal(c: Arithmetic, z: mpf, y: mpf, gamma: mpf) -> tuple[Component, ...]:
    """With t = +-z (loss sigmoid(-t)^gamma softplus(-t)):
    dL/dt = -sigmoid(-t)^gamma (gamma sigmoid(t) softplus(-t) + sigmoid(-t)),
    two non-negative terms."""
    label_one = y == 1
    t = z if label_one else neg(z)
    other = sigmoid_value(c, neg(t))
    power = other * other if gamma == 2 else c.power(other, c.num(gamma))
    slope = -(power * (c.num(gamma) * sigmoid_value(c, t) * softplus_value(c, neg(t)) + other))
    return (slope if label_one else -slope,)


@exact
@differentiable
def hinge(c: Arithmetic, s: mpf, y: mpf) -> tuple[Component, ...]:
    return (_step(sub(ONE, mul(y, s)), neg(y)),)


@exact
@differentiable
def squared_hinge(c: Arithmetic, s: mpf, y: mpf) -> tuple[Component, ...]:
    """-2 y max(0, 1 - y s): continuous at the corner."""
    return (neg(_twice(mul(y, max_or_zero(sub(ONE, mul(y, s)))))),)


@exact
@differentiable
def margin_ranking(c: Arithmetic, x1: mpf, y: mpf, x2: mpf, margin: mpf) -> tuple[Component, ...]:
    return (_step(add(mul(neg(y), sub(x1, x2)), margin), neg(y)),)


@exact
@differentiable
def l2_penalty(c: Arithmetic, w: mpf) -> tuple[Component, ...]:
    return (_twice(w),)


@exact
@differentiable
def l1_penalty(c: Arithmetic, w: mpf) -> tuple[Component, ...]:
    return (_sign(w),)


# --- row-wise losses ----------------------------------------------------------------

def _softmax(c: Arithmetic, z: Sequence[mpf]) -> list[Any]:
    """softmax from exact differences, nothing overflowing: with T logits tied at the
    maximum m and S = sum exp(z_k - m) over the others, softmax_k = exp(z_k - m) /
    (T + S) for those, and 1/T - S / (T (T + S)) for the tied ones: an exact head
    and a small tail, so 1 - softmax never cancels."""
    m = max(z)
    tied = [k for k, v in enumerate(z) if v == m]
    share = rational(Fraction(1, len(tied)))
    terms = {k: c.exp_of(sub(v, m)) for k, v in enumerate(z) if v != m}
    if not terms:
        return [share] * len(z)
    total = total_of(list(terms.values()))
    scale = len(tied) + total
    tail = -(total / (len(tied) * scale))
    return [Shifted(share, tail) if k in tied else terms[k] / scale for k in range(len(z))]


def _affine(c: Arithmetic, weight: mpf, p: Any, offset: mpf) -> Component:
    """weight * p - offset for a softmax entry p (exact weight and offset): exact
    where p is, an exact head and a tail where p has one."""
    if isinstance(p, Shifted):
        head = rational(to_fraction(weight) * to_fraction(p.head) - to_fraction(offset))
        return Shifted(head, c.num(weight) * p.tail)
    if isinstance(p, (mpf, Fraction)):
        return rational(to_fraction(weight) * to_fraction(p) - to_fraction(offset))
    return shift(c, neg(offset), c.num(weight) * p)


@differentiable
def cross_entropy(c: Arithmetic, z: list[mpf], t: int) -> list[Component]:
    """softmax - onehot(t): the target's 1 - softmax_t kept exact in its head."""
    return [_affine(c, ONE, p, ONE if k == t else ZERO) for k, p in enumerate(_softmax(c, z))]


@differentiable
def soft_cross_entropy(c: Arithmetic, z: list[mpf], q: list[mpf]) -> list[Component]:
    """(sum_c q_c) softmax_j - q_j, the target's total exact."""
    weight = exact_total(q)
    return [_affine(c, weight, p, qj) for p, qj in zip(_softmax(c, z), q)]


@exact
@differentiable
def nll(c: Arithmetic, log_probs: list[mpf], t: int) -> list[Component]:
    return [-ONE if k == t else ZERO for k in range(len(log_probs))]


def _minus_ratio(c: Arithmetic, weight: mpf, value: mpf) -> Component:
    """-weight / value for value in the log's domain, zero for a zero weight."""
    if value < 0:
        return NAN
    if weight == 0:
        return ZERO
    share = _divide(weight, value)
    return neg(share) if isinstance(share, mpf) else _negated(c, share)


@differentiable
def categorical_ce(c: Arithmetic, p: list[mpf], q: list[mpf]) -> list[Component]:
    return [_minus_ratio(c, qc, pc) for pc, qc in zip(p, q)]


@differentiable
def kl_div(c: Arithmetic, q: list[mpf], p: list[mpf]) -> list[Component]:
    """d/dq_j sum_c p_c log(p_c / q_c) = -p_j / q_j (zero where p_j = 0)."""
    return [_minus_ratio(c, pc, qc) for qc, pc in zip(q, p)]


@differentiable
def multi_margin(c: Arithmetic, s: list[mpf], t: int, margin: mpf) -> list[Component]:
    count = mpf(len(s))
    gap = sub(margin, s[t])
    share = quotient(ONE, count)
    grad: list[Component] = [_step(add(gap, sj), ONE) if j != t else ZERO for j, sj in enumerate(s)]
    others = [g for j, g in enumerate(grad) if j != t]
    active = sum(1 for g in others if g)
    grad = [share if g is ONE else g for g in grad]
    grad[t] = UNDEFINED if any(g is UNDEFINED for g in others) else _divide(mpf(-active), count)
    return grad


@exact
@differentiable
def categorical_hinge(c: Arithmetic, s: list[mpf], t: int) -> list[Component]:
    """max(0, 1 + max_{j != t} s_j - s_t): slope -1 at t and +1 at the unique
    runner-up while active; undefined at the corner and for tied runners-up."""
    grad: list[Component] = [ZERO] * len(s)
    others = [j for j in range(len(s)) if j != t]
    if not others:
        return grad
    top = max(s[j] for j in others)
    tied = [j for j in others if s[j] == top]
    h = sub(add(ONE, top), s[t])
    if h < 0:
        return grad
    if h == 0:
        for j in (t, *tied):
            grad[j] = UNDEFINED
        return grad
    grad[t] = -ONE
    for j in tied:
        grad[j] = ONE if len(tied) == 1 else UNDEFINED
    return grad


@differentiable
def cosine_similarity(c: Arithmetic, x: list[mpf], y: list[mpf]) -> list[Component]:
    """-(y_j |x|^2 - (x.y) x_j) / (|x|^2 sqrt(|x|^2 |y|^2)): exact numerators, one
    square root; a zero row has a nan loss and nan derivatives."""
    dot = exact_total([mul(a, b) for a, b in zip(x, y)])
    xx, yy = (exact_total([mul(a, a) for a in row]) for row in (x, y))
    if xx == 0 or yy == 0:
        return [NAN] * len(x)
    scale = c.num(xx) * c.sqrt(c.num(mul(xx, yy)))
    numerators = [neg(sub(mul(yj, xx), mul(dot, xj))) for xj, yj in zip(x, y)]
    return [ZERO if n == 0 else c.num(n) / scale for n in numerators]


@differentiable
def contrastive(c: Arithmetic, x1: list[mpf], label: mpf, x2: list[mpf], margin: mpf) -> list[Component]:
    """(x1 - x2) (l - (1 - l) max(0, m - d) / d), d = |x1 - x2|; undefined at d = 0
    when the margin term is active there (the norm's corner)."""
    u = [sub(a, b) for a, b in zip(x1, x2)]
    d2 = squared_distance(x1, x2)
    pull = sub(ONE, label)
    if d2 == 0:
        return [UNDEFINED if pull and margin > 0 else ZERO for _ in u]
    if not pull or mul(margin, margin) <= d2:
        return [mul(ud, label) for ud in u]  # exact
    d = c.sqrt(c.num(d2))
    gap = c.num(sub(mul(margin, margin), d2)) / (c.num(margin) + d)  # m - d without cancellation
    coefficient = c.num(label) - c.num(pull) * gap / d
    return [ZERO if ud == 0 else c.num(ud) * coefficient for ud in u]


@differentiable
def triplet_margin(c: Arithmetic, a: list[mpf], p: list[mpf], n: list[mpf], margin: mpf) -> list[Component]:
    """(a - p) / |a - p| - (a - n) / |a - n| while the hinge is active; the hinge's
    argument is settled first (it decides which formula applies)."""
    s_p, s_n = squared_distance(a, p), squared_distance(a, n)
    side = _triplet_side(c, s_p, s_n, margin)
    if side is None:
        return [Enclosure(-INF, INF)] * len(a)  # never settles: precision rises
    if side < 0:
        return [ZERO] * len(a)
    if side == 0 or s_p == 0 or s_n == 0:
        return [UNDEFINED] * len(a)
    d_p, d_n = c.sqrt(c.num(s_p)), c.sqrt(c.num(s_n))
    return [c.num(sub(aj, pj)) / d_p - c.num(sub(aj, nj)) / d_n for aj, pj, nj in zip(a, p, n)]


def _triplet_side(c: Arithmetic, s_p: mpf, s_n: mpf, margin: mpf) -> int | None:
    """The sign of h = |a - p| - |a - n| + margin, or None when this precision
    cannot tell."""
    if s_p == s_n:
        return (margin > 0) - (margin < 0)
    h = c.num(sub(s_p, s_n)) / (c.sqrt(c.num(s_p)) + c.sqrt(c.num(s_n))) + c.num(margin)
    lower, upper = (mpmath.mp.make_mpf(e) for e in c.endpoints(h))
    if lower == upper:
        return (lower > 0) - (lower < 0)
    if lower > 0:
        return 1
    if upper < 0:
        return -1
    return None

