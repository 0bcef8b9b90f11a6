"""Analytic derivatives of the canonical losses with respect to ``input``, in arbitrary precision.

Each function sits beside its loss in reference.formulas (same name, same
arguments) and returns one item's derivative: a tuple with one component for an
element-wise loss, one per input element of the row for a row-wise loss. The
reduction is applied by the caller (reference.gradients): the mean divides by
the item count.

The formulas are rearranged like the losses themselves so that no step cancels
where it can be avoided (exact numerators, 1 - sigmoid(z) as sigmoid(-z),
softmax_t - 1 as minus the other classes' sum); where a difference does cancel,
precision escalation sees it.

A component is ``UNDEFINED`` (None) where the loss has no derivative at these
exact inputs (|d| at d = 0, the corner of max(0, h) at h = 0, a norm at the zero
vector): frameworks return a subgradient there by convention, and the harness
does not judge a convention as an error. An item holding an infinite argument
has no derivative either (its loss is not differentiable in the reals); an item
holding a nan has nan derivatives, as its loss is nan.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import mpmath

from reference.formulas import log1p_difference, sigmoid, squared_distance
from reference.mpexact import (
    ONE, ZERO, add, exact, exact_total, exact_when, is_power_of_two, logsumexp_minus, max_or_zero, mul, neg, softplus,
    sub,
)

mpf = mpmath.mpf
UNDEFINED = None
Component = mpf | None
Derivative = Callable[..., tuple[Component, ...]]


def _scalars(item: Sequence[Any]) -> list[mpf]:
    """The real arguments of an item, rows flattened (class indices are ints)."""
    return [v for arg in item for v in (arg if isinstance(arg, list) else [arg]) if isinstance(v, mpf)]


def differentiable(function: Callable[..., Sequence[Component]]) -> Derivative:
    """Wrap a derivative written for finite arguments: nan anywhere in the item gives
    nan components, an infinity gives undefined ones."""
    @functools.wraps(function)
    def derivative(*item: Any, **params: mpf) -> tuple[Component, ...]:
        width = len(item[0]) if isinstance(item[0], list) else 1
        values = _scalars(item)
        if any(mpmath.isnan(v) for v in values):
            return (mpmath.nan,) * width
        if any(mpmath.isinf(v) for v in values):
            return (UNDEFINED,) * width
        return tuple(function(*item, **params))
    return derivative


def _sign(d: mpf) -> Component:
    """d/dd |d|: undefined at 0."""
    return UNDEFINED if d == 0 else (ONE if d > 0 else -ONE)


def _step(h: mpf, slope: mpf) -> Component:
    """d/dh max(0, h) times ``slope``: undefined at the corner h = 0."""
    if h == 0:
        return UNDEFINED
    return slope if h > 0 else ZERO


def _divide(a: mpf, b: mpf) -> mpf:
    """a / b for b >= 0 in the extended reals: a / +0 is +-inf, 0 / 0 is nan."""
    if b != 0:
        return a / b
    return mpmath.nan if a == 0 else (mpmath.inf if a > 0 else -mpmath.inf)


def _twice(a: mpf) -> mpf:
    return mpmath.ldexp(a, 1)


# --- element-wise losses --------------------------------------------------------

@exact
@differentiable
def mse(x: mpf, y: mpf) -> tuple[Component, ...]:
    return (_twice(sub(x, y)),)


@exact
@differentiable
def mae(x: mpf, y: mpf) -> tuple[Component, ...]:
    return (_sign(sub(x, y)),)


@exact
@differentiable
def huber(x: mpf, y: mpf, delta: mpf) -> tuple[Component, ...]:
    d = sub(x, y)  # continuous at |d| = delta: the loss is C1
    if abs(d) <= delta:
        return (d,)
    return (delta if d > 0 else neg(delta),)


@exact_when(lambda beta: is_power_of_two(beta))
@differentiable
def smooth_l1(x: mpf, y: mpf, beta: mpf) -> tuple[Component, ...]:
    d = sub(x, y)
    if abs(d) < beta:
        return (d / beta,)
    return (ONE if d > 0 else -ONE,)


@differentiable
def log_cosh(x: mpf, y: mpf) -> tuple[Component, ...]:
    return (mpmath.tanh(sub(x, y)),)


@differentiable
def msle(x: mpf, y: mpf) -> tuple[Component, ...]:
    """2 (log1p(x) - log1p(y)) / (1 + x), the log difference free of cancellation."""
    return (_twice(log1p_difference(x, y)) / add(ONE, x),)


@differentiable
def poisson_nll(x: mpf, y: mpf) -> tuple[Component, ...]:
    """1 - y / x = (x - y) / x, the numerator exact; 1 where y = 0 (0 log x = 0)."""
    if y == 0:
        return (ONE,)
    return (_divide(sub(x, y), x),)


@differentiable
def gaussian_nll(x: mpf, y: mpf, var: mpf) -> tuple[Component, ...]:
    return (_divide(sub(x, y), var),)


@differentiable
def bce(p: mpf, y: mpf) -> tuple[Component, ...]:
    """-y / p + (1 - y) / (1 - p) = (p - y) / (p (1 - p)): exact numerator and
    denominator, one rounding. At p = 0 or 1 a zero weight keeps its term zero."""
    if p < 0 or p > 1:
        return (mpmath.nan,)
    q = sub(ONE, p)
    if p != 0 and q != 0:
        return (sub(p, y) / mul(p, q),)
    from_y = ZERO if y == 0 else -_divide(y, p)
    from_one_minus_y = ZERO if y == 1 else _divide(sub(ONE, y), q)
    return (from_y + from_one_minus_y,)


@differentiable
def bce_logits(z: mpf, y: mpf) -> tuple[Component, ...]:
    """sigmoid(z) - y; for y = 1 that is -sigmoid(-z), which does not cancel."""
    if y == 1:
        return (neg(sigmoid(neg(z))),)
    if y == 0:
        return (sigmoid(z),)
    return (sigmoid(z) - y,)


@differentiable
def soft_margin(s: mpf, y: mpf) -> tuple[Component, ...]:
    return (neg(mul(y, sigmoid(neg(mul(y, s))))),)


@differentiable
def focal(z: mpf, y: mpf, gamma: mpf) -> tuple[Component, ...]:
    """With t = +-z (loss sigmoid(-t)^gamma softplus(-t)):
    dL/dt = -sigmoid(-t)^gamma (gamma sigmoid(t) softplus(-t) + sigmoid(-t)),
    two non-negative terms."""
    label_one = y == 1
    t = z if label_one else neg(z)
    other = sigmoid(neg(t))
    slope = neg(other ** gamma * (gamma * sigmoid(t) * softplus(neg(t)) + other))
    return (slope if label_one else neg(slope),)


@exact
@differentiable
def hinge(s: mpf, y: mpf) -> tuple[Component, ...]:
    return (_step(sub(ONE, mul(y, s)), neg(y)),)


@exact
@differentiable
def squared_hinge(s: mpf, y: mpf) -> tuple[Component, ...]:
    """-2 y max(0, 1 - y s): continuous at the corner."""
    return (neg(_twice(mul(y, max_or_zero(sub(ONE, mul(y, s)))))),)


@exact
@differentiable
def margin_ranking(x1: mpf, y: mpf, x2: mpf, margin: mpf) -> tuple[Component, ...]:
    return (_step(add(mul(neg(y), sub(x1, x2)), margin), neg(y)),)


@exact
@differentiable
def l2_penalty(w: mpf) -> tuple[Component, ...]:
    return (_twice(w),)


@exact
@differentiable
def l1_penalty(w: mpf) -> tuple[Component, ...]:
    return (_sign(w),)


# --- row-wise losses ----------------------------------------------------------------

def _softmax(z: Sequence[mpf]) -> list[mpf]:
    """softmax_c = exp(-(logsumexp(z) - z_c)), from the cancellation-free differences."""
    return [mpmath.exp(neg(gap)) for gap in logsumexp_minus(z)]


@differentiable
def cross_entropy(z: list[mpf], t: int) -> list[Component]:
    """softmax - onehot(t); the target's component is minus the other classes' sum
    (1 - softmax_t cancels when the prediction is confident)."""
    grad = _softmax(z)
    grad[t] = -mpmath.fsum(p for c, p in enumerate(grad) if c != t) if len(z) > 1 else ZERO
    return grad


@differentiable
def soft_cross_entropy(z: list[mpf], q: list[mpf]) -> list[Component]:
    """(sum_c q_c) softmax_j - q_j; the target's total is exact."""
    total = exact_total(q)
    return [total * p - qj for p, qj in zip(_softmax(z), q)]


@exact
@differentiable
def nll(log_probs: list[mpf], t: int) -> list[Component]:
    return [-ONE if c == t else ZERO for c in range(len(log_probs))]


def _minus_ratio(weight: mpf, value: mpf) -> mpf:
    """-weight / value for value in the log's domain, zero for a zero weight."""
    if value < 0:
        return mpmath.nan
    if weight == 0:
        return ZERO
    return -_divide(weight, value)


@differentiable
def categorical_ce(p: list[mpf], q: list[mpf]) -> list[Component]:
    return [_minus_ratio(qc, pc) for pc, qc in zip(p, q)]


@differentiable
def kl_div(q: list[mpf], p: list[mpf]) -> list[Component]:
    """d/dq_j sum_c p_c log(p_c / q_c) = -p_j / q_j (zero where p_j = 0)."""
    return [_minus_ratio(pc, qc) for qc, pc in zip(q, p)]


@differentiable
def multi_margin(s: list[mpf], t: int, margin: mpf) -> list[Component]:
    count = len(s)
    gap = sub(margin, s[t])
    grad: list[Component] = [_step(add(gap, sj), ONE / count) if j != t else ZERO for j, sj in enumerate(s)]
    others = [g for j, g in enumerate(grad) if j != t]
    active = sum(1 for g in others if g)
    grad[t] = UNDEFINED if any(g is UNDEFINED for g in others) else -mpf(active) / count
    return grad


@exact
@differentiable
def categorical_hinge(s: list[mpf], t: int) -> list[Component]:
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
def cosine_similarity(x: list[mpf], y: list[mpf]) -> list[Component]:
    """-(y_j |x|^2 - (x.y) x_j) / (|x|^2 sqrt(|x|^2 |y|^2)): exact numerators, one
    square root; a zero row has a nan loss and nan derivatives."""
    dot = exact_total([mul(a, b) for a, b in zip(x, y)])
    xx, yy = (exact_total([mul(a, a) for a in row]) for row in (x, y))
    if xx == 0 or yy == 0:
        return [mpmath.nan] * len(x)
    scale = xx * mpmath.sqrt(mul(xx, yy))
    return [neg(sub(mul(yj, xx), mul(dot, xj))) / scale for xj, yj in zip(x, y)]


@differentiable
def contrastive(x1: list[mpf], label: mpf, x2: list[mpf], margin: mpf) -> list[Component]:
    """(x1 - x2) (l - (1 - l) max(0, m - d) / d), d = |x1 - x2|; undefined at d = 0
    when the margin term is active there (the norm's corner)."""
    u = [sub(a, b) for a, b in zip(x1, x2)]
    d2 = squared_distance(x1, x2)
    m2 = mul(margin, margin)
    pull = sub(ONE, label)
    if d2 == 0:
        return [UNDEFINED if pull and margin > 0 else ZERO for _ in u]
    d = mpmath.sqrt(d2)
    gap = sub(m2, d2) / (margin + d) if m2 > d2 else ZERO  # m - d without cancellation
    coefficient = label - pull * gap / d if pull and gap else label
    return [ud * coefficient for ud in u]


@differentiable
def triplet_margin(a: list[mpf], p: list[mpf], n: list[mpf], margin: mpf) -> list[Component]:
    """(a - p) / |a - p| - (a - n) / |a - n| while the hinge is active."""
    s_p, s_n = squared_distance(a, p), squared_distance(a, n)
    d_p, d_n = mpmath.sqrt(s_p), mpmath.sqrt(s_n)
    both = d_p + d_n
    h = (sub(s_p, s_n) / both if both else ZERO) + margin
    if h < 0:
        return [ZERO] * len(a)
    if h == 0 or d_p == 0 or d_n == 0:
        return [UNDEFINED] * len(a)
    return [sub(aj, pj) / d_p - sub(aj, nj) / d_n for aj, pj, nj in zip(a, p, n)]
