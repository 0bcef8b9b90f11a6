"""The canonical loss definitions in arbitrary precision (one function per loss).

Each function takes the exact inputs of one item (an element for element-wise
losses, a row for row-wise ones) and returns that item's loss at the current
mpmath working precision. Rational steps are done exactly (exact ``fsub``,
``fmul``, sums), and transcendental ones are written so that no step cancels
(exact differences before ``exp``, ``log1p`` near 1): precision escalation can
then only see honest rounding, never two precisions agreeing on a wrong zero.
Every function is a plain scalar function of its arguments, so analytic
derivatives can sit beside each one.

Formulas marked ``@exact`` compute each item without any rounding, so one
evaluation settles it. Terms far below the working precision are not computed
(they cannot change a rounded result, and exp(-1e300) alone costs mpmath a
1000-bit argument reduction); escalation still compares two precisions.

Non-finite inputs follow extended-real arithmetic (inf - inf and 0 * inf are
nan), except that a term whose weight (label, probability) is exactly zero
contributes zero, the usual 0 log 0 = 0 convention.
"""
from __future__ import annotations

from collections.abc import Sequence

import mpmath
from mpmath.libmp import libelefun

from reference.mpexact import (
    ONE, ZERO, absolute, add, all_finite, exact, exact_sum, exact_total, exact_when, exp, guard_log, half,
    is_power_of_two, log, log1p, logsumexp_minus, max_or_zero, mul, neg, softplus, sub, weighted,
)

mpf = mpmath.mpf


# --- element-wise losses: f(input, target, **params) ----------------------

@exact
def mse(x: mpf, y: mpf) -> mpf:
    d = sub(x, y)
    return mul(d, d)


@exact
def mae(x: mpf, y: mpf) -> mpf:
    return absolute(sub(x, y))


@exact
def huber(x: mpf, y: mpf, delta: mpf) -> mpf:
    d = absolute(sub(x, y))
    if d <= delta:
        return half(mul(d, d))
    return mul(delta, sub(d, half(delta)))


@exact_when(lambda beta: is_power_of_two(beta))
def smooth_l1(x: mpf, y: mpf, beta: mpf) -> mpf:
    d = absolute(sub(x, y))
    if d < beta:
        return half(mul(d, d)) / beta  # exact when beta is a power of two
    return sub(d, half(beta))


def log_cosh(x: mpf, y: mpf) -> mpf:
    d = absolute(sub(x, y))
    if mpmath.isfinite(d) and d > guard_log():
        # log cosh d = d - log 2 + log1p(exp(-2d)), the last term below precision.
        return d - mpmath.ln2
    # log cosh d = log1p(cosh d - 1) = log1p(2 sinh(d/2)^2): no cancellation at small d.
    s = mpmath.mp.make_mpf(libelefun.mpf_cosh_sinh(half(d)._mpf_, mpmath.mp.prec, "n")[1])
    return log1p(2 * s * s)


def log1p_difference(x: mpf, y: mpf) -> mpf:
    """log1p(x) - log1p(y) = log((1 + x) / (1 + y)), with the ratio's distance from 1,
    (x - y) / (1 + y), taken from the exact difference: no cancellation near x = y."""
    if not (mpmath.isfinite(x) and mpmath.isfinite(y)):
        return log1p(x) - log1p(y)
    ratio_minus_one = sub(x, y) / add(ONE, y)
    return log1p(ratio_minus_one) if abs(ratio_minus_one) < 0.5 else log(add(ONE, x) / add(ONE, y))


def msle(x: mpf, y: mpf) -> mpf:
    d = log1p_difference(x, y)
    return d * d


def poisson_nll(x: mpf, y: mpf) -> mpf:
    """x - y log x (rate x, count y); no term cancels exactly (log x is
    transcendental for x != 1), so escalation settles any cancellation."""
    return x - weighted(y, log(x))


def gaussian_nll(x: mpf, y: mpf, var: mpf) -> mpf:
    d = sub(x, y)
    return half(log(var) + mul(d, d) / var)


def bce(p: mpf, y: mpf) -> mpf:
    # log(1 - p) of the exact 1 - p: mpmath's log keeps full relative accuracy near 1.
    return -(weighted(y, log(p)) + weighted(sub(ONE, y), log(sub(ONE, p))))


def bce_logits(z: mpf, y: mpf) -> mpf:
    # -(y log sigmoid(z) + (1-y) log(1 - sigmoid(z))) = y softplus(-z) + (1-y) softplus(z)
    one_minus_y = sub(ONE, y)
    if not mpmath.isfinite(z):
        return weighted(y, softplus(-z)) + weighted(one_minus_y, softplus(z))
    # softplus(+-z) = relu(+-z) + log1p(exp(-|z|)): one shared, non-negative term.
    linear = mul(one_minus_y, z) if z > 0 else mul(y, neg(z))
    if linear and abs(z) > 1100 + guard_log():
        return linear  # log1p(exp(-|z|)) < exp(-|z|) is below precision against >= 2**-1074 |z|
    return linear + log1p(exp(-abs(z)))


def soft_margin(s: mpf, y: mpf) -> mpf:
    return softplus(neg(mul(y, s)))


def sigmoid(t: mpf) -> mpf:
    """1 / (1 + exp(-t)) to full relative accuracy, with no overflow."""
    if mpmath.isnan(t):
        return t
    if t >= 0:
        return ONE / (ONE + exp(-t))
    e = exp(t)
    return e / (ONE + e)


def focal(z: mpf, y: mpf, gamma: mpf) -> mpf:
    """-(1 - p_t)^gamma log p_t with p_t = sigmoid(t), t = z for label 1 and -z for
    label 0: 1 - p_t = sigmoid(-t) and -log p_t = softplus(-t), neither
    cancelling nor overflowing."""
    t = z if y == 1 else neg(z)
    return sigmoid(neg(t)) ** gamma * softplus(neg(t))


@exact
def hinge(s: mpf, y: mpf) -> mpf:
    return max_or_zero(sub(ONE, mul(y, s)))


@exact
def squared_hinge(s: mpf, y: mpf) -> mpf:
    h = hinge(s, y)
    return mul(h, h)


# --- row-wise losses: f(input_row, target, [extra], **params) --------------

def cross_entropy(z: Sequence[mpf], t: int) -> mpf:
    return logsumexp_minus(z, (t,))[0]


def soft_cross_entropy(z: Sequence[mpf], q: Sequence[mpf]) -> mpf:
    return exact_sum([weighted(qc, lc) for qc, lc in zip(q, logsumexp_minus(z))])


@exact
def nll(log_probs: Sequence[mpf], t: int) -> mpf:
    return neg(log_probs[t])


def _kl_term(q: mpf, p: mpf) -> mpf:
    if mpmath.isnan(p) or mpmath.isnan(q):
        return mpmath.nan
    if p == 0:
        return ZERO
    if q == 0:
        return mpmath.inf
    ratio_minus_one = sub(p, q) / q
    if abs(ratio_minus_one) < 0.5:
        return p * log1p(ratio_minus_one)  # p close to q: no cancellation in log(p/q)
    return p * log(p / q)  # p/q away from 1: log is well conditioned (1 + u would cancel)


def categorical_ce(p: Sequence[mpf], q: Sequence[mpf]) -> mpf:
    """-sum_c q_c log p_c of the row as given (not renormalised); ``p`` is the input."""
    return exact_sum([weighted(qc, neg(log(pc))) for pc, qc in zip(p, q)])


def kl_div(q: Sequence[mpf], p: Sequence[mpf]) -> mpf:
    """KL(p || q) for one row; ``q`` is the prediction (input), ``p`` the target."""
    return exact_sum([_kl_term(qc, pc) for qc, pc in zip(q, p)])


def multi_margin(s: Sequence[mpf], t: int, margin: mpf) -> mpf:
    gap = sub(margin, s[t])
    terms = [max_or_zero(add(gap, sj)) for j, sj in enumerate(s) if j != t]
    return exact_sum(terms) / len(s)


@exact
def categorical_hinge(s: Sequence[mpf], t: int) -> mpf:
    others = [sj for j, sj in enumerate(s) if j != t]
    if any(mpmath.isnan(v) for v in others):
        return mpmath.nan
    if not others:
        return ZERO
    return max_or_zero(sub(add(ONE, max(others)), s[t]))


def squared_distance(a: Sequence[mpf], b: Sequence[mpf]) -> mpf:
    """|a - b|^2, exact for finite rows."""
    squares = [mul(d, d) for d in (sub(u, v) for u, v in zip(a, b))]
    return exact_total(squares) if all_finite(squares) else exact_sum(squares)


def contrastive(x1: Sequence[mpf], label: mpf, x2: Sequence[mpf], margin: mpf) -> mpf:
    """(l d^2 + (1-l) max(0, m - d)^2) / 2 with d = |x1 - x2|; ``label`` is the target."""
    d2 = squared_distance(x1, x2)
    m2 = mul(margin, margin)
    if mpmath.isnan(d2) or m2 > d2:
        # m - d = (m^2 - d^2) / (m + d): exact numerator, so no cancellation near d = m.
        gap = sub(m2, d2) / (margin + mpmath.sqrt(d2))
    else:
        gap = ZERO
    return half(weighted(label, d2) + weighted(sub(ONE, label), gap * gap))


def cosine_similarity(x: Sequence[mpf], y: Sequence[mpf]) -> mpf:
    """-x.y / (|x| |y|) from the exact dot product and exact squared norms: one
    square root and one division round. A zero row gives 0/0 = nan."""
    products = [mul(a, b) for a, b in zip(x, y)]
    norms = [[mul(a, a) for a in row] for row in (x, y)]
    if not all_finite(products) or not all(all_finite(n) for n in norms):
        return -exact_sum(products) / mpmath.sqrt(exact_sum(norms[0]) * exact_sum(norms[1]))
    dot, xx, yy = exact_total(products), exact_total(norms[0]), exact_total(norms[1])
    if xx == 0 or yy == 0:
        return mpmath.nan
    return neg(dot) / mpmath.sqrt(mul(xx, yy))


def triplet_margin(a: Sequence[mpf], p: Sequence[mpf], n: Sequence[mpf], margin: mpf) -> mpf:
    """max(0, |a - p| - |a - n| + margin), the distance difference written as
    (S_p - S_n) / (|a - p| + |a - n|) with exact squared distances S: it does not
    cancel when the two distances are close."""
    s_p, s_n = squared_distance(a, p), squared_distance(a, n)
    d_p, d_n = mpmath.sqrt(s_p), mpmath.sqrt(s_n)
    if not (mpmath.isfinite(s_p) and mpmath.isfinite(s_n)):
        return max_or_zero(d_p - d_n + margin)
    both = d_p + d_n
    difference = sub(s_p, s_n) / both if both else ZERO
    return max_or_zero(difference + margin)


@exact
def margin_ranking(x1: mpf, y: mpf, x2: mpf, margin: mpf) -> mpf:
    return max_or_zero(add(mul(neg(y), sub(x1, x2)), margin))


@exact
def l2_penalty(w: mpf) -> mpf:
    return mul(w, w)


@exact
def l1_penalty(w: mpf) -> mpf:
    return absolute(w)
