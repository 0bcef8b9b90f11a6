"""The canonical loss definitions in arbitrary precision (one function per loss).

Each function takes the exact inputs of one item (an element for element-wise
losses, a row for row-wise ones) and returns that item's loss at the current
mpmath working precision. Rational steps are done exactly (exact ``fsub``,
``fmul``, sums), and transcendental ones are written so that no step cancels
(exact differences before ``exp``, ``log1p`` near 1): precision escalation can
then only see honest rounding, never two precisions agreeing on a wrong zero.
Every function is a plain scalar function of its arguments, so analytic
derivatives can sit beside each one.

Non-finite inputs follow extended-real arithmetic (inf - inf and 0 * inf are
nan), except that a term whose weight (label, probability) is exactly zero
contributes zero, the usual 0 log 0 = 0 convention.
"""
from __future__ import annotations

from collections.abc import Sequence

import mpmath
from mpmath.libmp import libmpf

mpf = mpmath.mpf
ZERO = mpf(0)
ONE = mpf(1)


# --- exact building blocks -------------------------------------------------

def sub(a: mpf, b: mpf) -> mpf:
    """a - b without rounding."""
    return mpmath.fsub(a, b, exact=True)


def add(a: mpf, b: mpf) -> mpf:
    return mpmath.fadd(a, b, exact=True)


def mul(a: mpf, b: mpf) -> mpf:
    return mpmath.fmul(a, b, exact=True)


def half(a: mpf) -> mpf:
    return mpmath.ldexp(a, -1)


def exact_sum(terms: Sequence[mpf]) -> mpf:
    """Sum of ``terms`` rounded once to the working precision.

    mpmath's own ``fsum`` drops a term more than 2*prec bits below the running
    sum, which is wrong under cancellation (1e300 + 1 - 1e300); summing with a
    generous guard covers the whole float64 exponent range exactly.
    """
    guard_prec = max(8 * mpmath.mp.prec, 4096)
    total = libmpf.mpf_sum([mpf(t)._mpf_ for t in terms], guard_prec, "n")
    return +mpmath.mp.make_mpf(total)


def weighted(weight: mpf, value: mpf) -> mpf:
    """weight * value, with a zero weight giving zero even for infinite value."""
    return ZERO if weight == 0 else weight * value


def max_or_zero(a: mpf) -> mpf:
    """max(0, a), nan propagating."""
    if mpmath.isnan(a):
        return a
    return a if a > 0 else ZERO


def softplus(t: mpf) -> mpf:
    """log(1 + exp(t)) with no overflow and no cancellation."""
    if mpmath.isnan(t):
        return t
    return max_or_zero(t) + mpmath.log1p(mpmath.exp(-abs(t)))


def _all_finite(values: Sequence[mpf]) -> bool:
    return all(mpmath.isfinite(v) for v in values)


def logsumexp_minus(z: Sequence[mpf]) -> list[mpf]:
    """[logsumexp(z) - z_c for every c], each accurate to the working precision.

    With m = max(z) attained at k*, logsumexp(z) - z_c = (m - z_c) +
    log1p(sum_{k != k*} exp(z_k - m)): both parts are non-negative, so nothing
    cancels. Non-finite rows use the literal formula.
    """
    if not _all_finite(z):
        lse = mpmath.log(exact_sum([mpmath.exp(v) for v in z]))
        return [lse - v for v in z]
    top = max(range(len(z)), key=lambda k: z[k])
    m = z[top]
    tail = mpmath.log1p(exact_sum([mpmath.exp(sub(v, m)) for k, v in enumerate(z) if k != top]))
    return [sub(m, v) + tail for v in z]


# --- element-wise losses: f(input, target, **params) ----------------------

def mse(x: mpf, y: mpf) -> mpf:
    d = sub(x, y)
    return mul(d, d)


def mae(x: mpf, y: mpf) -> mpf:
    return abs(sub(x, y))


def huber(x: mpf, y: mpf, delta: mpf) -> mpf:
    d = abs(sub(x, y))
    if d <= delta:
        return half(mul(d, d))
    return mul(delta, sub(d, half(delta)))


def smooth_l1(x: mpf, y: mpf, beta: mpf) -> mpf:
    d = abs(sub(x, y))
    if d < beta:
        return half(mul(d, d)) / beta
    return sub(d, half(beta))


def log_cosh(x: mpf, y: mpf) -> mpf:
    # log cosh d = log1p(cosh d - 1) = log1p(2 sinh(d/2)^2): no cancellation at small d.
    s = mpmath.sinh(half(sub(x, y)))
    return mpmath.log1p(2 * s * s)


def bce(p: mpf, y: mpf) -> mpf:
    return -(weighted(y, mpmath.log(p)) + weighted(sub(ONE, y), mpmath.log1p(-p)))


def bce_logits(z: mpf, y: mpf) -> mpf:
    # -(y log sigmoid(z) + (1-y) log(1 - sigmoid(z))) = y softplus(-z) + (1-y) softplus(z)
    return weighted(y, softplus(-z)) + weighted(sub(ONE, y), softplus(z))


def hinge(s: mpf, y: mpf) -> mpf:
    return max_or_zero(sub(ONE, mul(y, s)))


def squared_hinge(s: mpf, y: mpf) -> mpf:
    h = hinge(s, y)
    return mul(h, h)


# --- row-wise losses: f(input_row, target, [extra], **params) --------------

def cross_entropy(z: Sequence[mpf], t: int) -> mpf:
    return logsumexp_minus(z)[t]


def soft_cross_entropy(z: Sequence[mpf], q: Sequence[mpf]) -> mpf:
    return exact_sum([weighted(qc, lc) for qc, lc in zip(q, logsumexp_minus(z))])


def nll(log_probs: Sequence[mpf], t: int) -> mpf:
    return -log_probs[t]


def _kl_term(q: mpf, p: mpf) -> mpf:
    if p == 0:
        return ZERO
    if q == 0:
        return mpmath.inf
    # log(p/q) = log1p((p - q)/q): accurate when p and q are close.
    return p * mpmath.log1p(sub(p, q) / q)


def kl_div(q: Sequence[mpf], p: Sequence[mpf]) -> mpf:
    """KL(p || q) for one row; ``q`` is the prediction (input), ``p`` the target."""
    return exact_sum([_kl_term(qc, pc) for qc, pc in zip(q, p)])


def multi_margin(s: Sequence[mpf], t: int, margin: mpf) -> mpf:
    gap = sub(margin, s[t])
    terms = [max_or_zero(add(gap, sj)) for j, sj in enumerate(s) if j != t]
    return exact_sum(terms) / len(s)


def categorical_hinge(s: Sequence[mpf], t: int) -> mpf:
    others = [sj for j, sj in enumerate(s) if j != t]
    if any(mpmath.isnan(v) for v in others):
        return mpmath.nan
    if not others:
        return ZERO
    return max_or_zero(sub(add(ONE, max(others)), s[t]))


def contrastive(x1: Sequence[mpf], label: mpf, x2: Sequence[mpf], margin: mpf) -> mpf:
    """(l d^2 + (1-l) max(0, m - d)^2) / 2 with d = |x1 - x2|; ``label`` is the target."""
    d2 = exact_sum([mul(d, d) for d in (sub(a, b) for a, b in zip(x1, x2))])
    m2 = mul(margin, margin)
    if mpmath.isnan(d2) or m2 > d2:
        # m - d = (m^2 - d^2) / (m + d): exact numerator, so no cancellation near d = m.
        gap = sub(m2, d2) / (margin + mpmath.sqrt(d2))
    else:
        gap = ZERO
    return half(weighted(label, d2) + weighted(sub(ONE, label), gap * gap))
