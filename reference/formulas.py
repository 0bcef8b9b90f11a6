"""The canonical loss definitions, one function per loss, the reference of record.

Each function takes an arithmetic ``c`` (reference.arith: Arb balls or mpmath
intervals) and the exact inputs of one item (an element for element-wise
losses, a row for row-wise ones), and returns that item's loss as an exact mpf
or as an enclosure of it. Written once, the same code runs in both arithmetics.
Rational steps are done exactly on mpf (reference.mpexact), and transcendental
ones are written so that no step cancels (exact differences before ``exp``,
``log1p`` near 1); where an exact head is followed by a small positive tail
(cross-entropy, softplus) the two are added without rounding (``shift``), so the
tail decides a head that lies on a tie. Branches test exact values only.

Formulas marked ``@exact`` compute each item without any rounding.

Non-finite inputs follow the limit of the loss as that input tends to its
infinity, the others fixed, where the limit exists (poisson_nll at input +inf
is +inf, cross-entropy with the target's logit +inf is 0), and give nan where
it does not (two infinities whose difference decides the value) or where an
input is nan. A term whose weight (label, probability) is exactly zero
contributes zero, the usual 0 log 0 = 0 convention.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mpmath

from reference.arith import Arithmetic, as_value, shift
from reference.mpexact import (
    INF, NAN, ONE, ZERO, absolute, add, all_finite, exact, exact_total, extended_total, half, is_nan,
    max_or_zero, mul, neg, ratio, sub,
)

mpf = mpmath.mpf
V = Any  # an exact mpf or an enclosure in the arithmetic


# --- shared steps -------------------------------------------------------------

def softplus(c: Arithmetic, t: mpf) -> V:
    """log(1 + exp(t)) = max(0, t) + log1p(exp(-|t|)), the head exact."""
    if not mpmath.isfinite(t):
        return t if t > 0 or is_nan(t) else ZERO
    return shift(c, max_or_zero(t), c.log1p(c.exp_of(neg(absolute(t)))))


def softplus_value(c: Arithmetic, t: mpf) -> Any:
    """softplus of a finite t as an arithmetic value (a factor in a product)."""
    return c.num(max_or_zero(t)) + c.log1p(c.exp_of(neg(absolute(t))))


def sigmoid_value(c: Arithmetic, t: mpf) -> Any:
    """1 / (1 + exp(-t)) of a finite t, to full relative accuracy and with no overflow,
    as an arithmetic value (a factor in a product)."""
    if t >= 0:
        return c.num(1) / (1 + c.exp_of(neg(t)))
    e = c.exp_of(t)
    return e / (1 + e)


def sigmoid(c: Arithmetic, t: mpf) -> V:
    """sigmoid(t) of a finite t as a result: for t > 0 it is 1 - sigmoid(-t), the
    exact 1 and a tail that decides its rounding however small it is."""
    if t > 0:
        return shift(c, ONE, -sigmoid_value(c, neg(t)))
    return sigmoid_value(c, t)


def log_of(c: Arithmetic, x: mpf) -> V:
    """log x in the extended reals: -inf at 0, +inf at +inf, nan below 0; exact 0 at 1."""
    if is_nan(x) or x < 0:
        return NAN
    if x == 0:
        return -INF
    if x == ONE:
        return ZERO
    if not mpmath.isfinite(x):
        return INF
    return c.log(c.num(x))


def infinite_sum(terms: Sequence[mpf]) -> mpf | None:
    """The limit of a sum holding non-finite terms (None when all are finite)."""
    if all_finite(terms):
        return None
    return extended_total(terms)


def total_of(values: Sequence[Any]) -> Any:
    """The sum of one or more arithmetic values (sum() would start from the int 0)."""
    return sum(values[1:], values[0])


def tail(c: Arithmetic, z: Sequence[mpf], top: int) -> Any:
    """log1p(sum_{k != top} exp(z_k - z_top)) of a finite row of two or more logits,
    ``top`` an argmax: the non-negative tail of logsumexp(z) - z_top."""
    return c.log1p(total_of([c.exp_of(sub(v, z[top])) for k, v in enumerate(z) if k != top]))


def combine(c: Arithmetic, exact_terms: Sequence[mpf], terms: Sequence[Any]) -> V:
    """Exact terms plus enclosed ones; non-finite exact terms give the limit."""
    limit = infinite_sum(exact_terms)
    if limit is not None:
        return limit
    head = exact_total(exact_terms)
    if not terms:
        return head
    total = total_of(terms)
    return total + c.num(head) if head else total


# --- element-wise losses: f(c, input, target, **params) -----------------------

@exact
def mse(c: Arithmetic, x: mpf, y: mpf) -> mpf:
    d = sub(x, y)
    return mul(d, d)


@exact
def mae(c: Arithmetic, x: mpf, y: mpf) -> mpf:
    return absolute(sub(x, y))


@exact
def huber(c: Arithmetic, x: mpf, y: mpf, delta: mpf) -> mpf:
    d = absolute(sub(x, y))
    if d <= delta:
        return half(mul(d, d))
    return mul(delta, sub(d, half(delta)))


@exact
def smooth_l1(c: Arithmetic, x: mpf, y: mpf, beta: mpf) -> V:
    d = absolute(sub(x, y))
    if d < beta:
        return ratio(half(mul(d, d)), beta)  # exact: a dyadic, or a Fraction
    return sub(d, half(beta))


def log_cosh(c: Arithmetic, x: mpf, y: mpf) -> V:
    d = absolute(sub(x, y))
    if not mpmath.isfinite(d) or d == 0:
        return d  # +inf, nan, or log cosh 0 = 0
    if d > 20:
        # log cosh d = d - log 2 + log1p(exp(-2d)): no overflow, and the exact d kept
        # apart from the tail, which a d far past the working precision would round away.
        return shift(c, d, c.log1p(c.exp_of(neg(add(d, d)))) - c.ln2())
    # cosh d - 1 = expm1(d)^2 / (2 exp d): log1p of it does not cancel at small d.
    e = c.expm1(c.num(d))
    return c.log1p(e * e / (2 * c.exp(c.num(d))))


def log1p_difference(c: Arithmetic, x: mpf, y: mpf) -> V:
    """log1p(x) - log1p(y) = log((1 + x) / (1 + y)) for finite x, y > -1, the ratio's
    distance from 1, (x - y) / (1 + y), taken from the exact difference."""
    if x == y:
        return ZERO
    gap, base = sub(x, y), add(ONE, y)
    if absolute(gap) < half(base):
        return c.log1p(c.div(gap, base))
    return c.log(c.div(add(ONE, x), base))


def msle(c: Arithmetic, x: mpf, y: mpf) -> V:
    if is_nan(x) or is_nan(y) or x < -1 or y < -1:
        return NAN
    ends = [INF if v == INF else -ONE if v == -1 else None for v in (x, y)]
    if any(e is not None for e in ends):
        # log1p is +-inf there: the difference has a limit unless both ends are alike.
        return NAN if ends[0] == ends[1] else INF
    d = log1p_difference(c, x, y)
    return d if d is ZERO else d * d


def poisson_nll(c: Arithmetic, x: mpf, y: mpf) -> V:
    """x - y log x (rate x, count y)."""
    if is_nan(x) or is_nan(y) or x < 0:
        return NAN
    if y == 0 or x == ONE:
        return x  # 0 log x = 0; log 1 = 0
    if not mpmath.isfinite(y):
        return NAN if x == INF else (-y if x > 1 else y)  # -y log x, log x of one sign
    if x == INF:
        return INF  # x outgrows y log x
    if x == 0:
        return INF if y > 0 else -INF
    return shift(c, x, -(c.num(y) * c.log(c.num(x))))


def gaussian_nll(c: Arithmetic, x: mpf, y: mpf, var: mpf) -> V:
    """(log var + (x - y)^2 / var) / 2."""
    d = sub(x, y)
    if is_nan(d) or is_nan(var) or var < 0:
        return NAN
    if var == 0:
        return -INF if d == 0 else INF
    if var == INF:
        return INF if mpmath.isfinite(d) else NAN
    if not mpmath.isfinite(d):
        return INF
    squares = ratio(half(mul(d, d)), var)
    logarithm = c.log(c.num(var)) / 2
    return shift(c, squares, logarithm) if isinstance(squares, mpf) else c.num(squares) + logarithm


def bce(c: Arithmetic, p: mpf, y: mpf) -> V:
    """-(y log p + (1 - y) log(1 - p)), log(1 - p) of the exact 1 - p."""
    if is_nan(p) or is_nan(y) or p < 0 or p > 1:
        return NAN
    weights, logs = [neg(y), sub(y, ONE)], [log_of(c, p), log_of(c, sub(ONE, p))]
    if not mpmath.isfinite(y):
        if p == half(ONE):
            return c.ln2()  # the two terms cancel for every y
        # -y (log p - log(1 - p)) - log(1 - p): the first term's sign decides.
        return INF if (y > 0) != (p > half(ONE)) else -INF
    exact_terms = [mul(w, v) for w, v in zip(weights, logs) if w and isinstance(v, mpf)]
    terms = [c.num(w) * v for w, v in zip(weights, logs) if w and not isinstance(v, mpf)]
    return combine(c, exact_terms, terms)


def bce_logits(c: Arithmetic, z: mpf, y: mpf) -> V:
    """y softplus(-z) + (1 - y) softplus(z) = the linear part (y |z| for z < 0,
    (1 - y) z for z > 0, exact) + log1p(exp(-|z|))."""
    if is_nan(z) or is_nan(y):
        return NAN
    one_minus_y = sub(ONE, y)
    if not mpmath.isfinite(y):
        if z == 0:
            return c.ln2()
        return INF if (y > 0) != (z > 0) else -INF  # -y z grows without bound
    if not mpmath.isfinite(z):
        weight = one_minus_y if z > 0 else y  # the term whose softplus tends to +inf
        return ZERO if weight == 0 else (INF if weight > 0 else -INF)
    linear = mul(one_minus_y, z) if z > 0 else mul(y, neg(z))
    return shift(c, linear, c.log1p(c.exp_of(neg(absolute(z)))))


def soft_margin(c: Arithmetic, s: mpf, y: mpf) -> V:
    return softplus(c, neg(mul(y, s)))


def focal(c: Arithmetic, z: mpf, y: mpf, gamma: mpf) -> V:
    """-(1 - p_t)^gamma log p_t with p_t = sigmoid(t), t = z for label 1 and -z for
    label 0: 1 - p_t = sigmoid(-t) and -log p_t = softplus(-t), neither
    cancelling nor overflowing."""
    if is_nan(z) or is_nan(y):
        return NAN
    t = z if y == 1 else neg(z)
    if not mpmath.isfinite(t):
        return ZERO if t > 0 else INF
    if t >= 0:  # both factors small and positive
        return _power(c, sigmoid_value(c, neg(t)), gamma) * softplus_value(c, neg(t))
    # Confidently wrong: (1 - e)^gamma (-t + L), e = sigmoid(t), L = log1p(exp(t)), is
    # -t plus a tail (((1 - e)^gamma - 1) (-t) + (1 - e)^gamma L) that decides its rounding.
    weight = _power(c, sigmoid_value(c, neg(t)), gamma)
    shrink = c.expm1(c.num(gamma) * c.log1p(-sigmoid_value(c, t)))  # (1 - e)^gamma - 1
    return shift(c, neg(t), shrink * c.num(neg(t)) + weight * c.log1p(c.exp_of(t)))


def _power(c: Arithmetic, v: Any, gamma: mpf) -> Any:
    return v * v if gamma == 2 else c.power(v, c.num(gamma))


@exact
def hinge(c: Arithmetic, s: mpf, y: mpf) -> mpf:
    return max_or_zero(sub(ONE, mul(y, s)))


@exact
def squared_hinge(c: Arithmetic, s: mpf, y: mpf) -> mpf:
    h = hinge(c, s, y)
    return mul(h, h)


# --- row-wise losses: f(c, input_row, target, [extra], **params) ----------------

def lse_gaps(c: Arithmetic, z: Sequence[mpf]) -> list[V]:
    """[logsumexp(z) - z_c for every class c], each an exact mpf or an enclosure.

    With m = max(z) attained at k*, logsumexp(z) - z_c = (m - z_c) + tail, tail =
    log1p(sum_{k != k*} exp(z_k - m)): both parts are non-negative and the head is
    exact, so nothing cancels and the tail decides a head lying on a tie.
    Non-finite logits take their limits: a +inf logit alone makes its own gap 0
    and every other +inf; a -inf logit drops out of the sum (its own gap +inf);
    two +inf logits leave their own gaps without a limit (nan).
    """
    if any(is_nan(v) for v in z):
        return [NAN] * len(z)
    top = [k for k, v in enumerate(z) if v == INF]
    if top:
        own = ZERO if len(top) == 1 else NAN
        return [own if k in top else INF for k in range(len(z))]
    live = [k for k, v in enumerate(z) if v != -INF]
    if not live:
        return [NAN] * len(z)  # every logit -inf: logsumexp itself has no limit
    finite = [z[k] for k in live]
    first = max(range(len(finite)), key=finite.__getitem__)
    rest = tail(c, finite, first) if len(finite) > 1 else ZERO
    result: list[V] = [INF] * len(z)
    for k in live:
        result[k] = shift(c, sub(finite[first], z[k]), rest) if len(finite) > 1 else ZERO
    return result


def cross_entropy(c: Arithmetic, z: Sequence[mpf], t: int) -> V:
    if any(is_nan(v) for v in z):
        return NAN
    return lse_gaps(c, z)[t] if not all_finite(z) else _one_gap(c, z, t)


def _one_gap(c: Arithmetic, z: Sequence[mpf], t: int) -> V:
    """logsumexp(z) - z_t of a finite row (lse_gaps for one class, without the others)."""
    if len(z) == 1:
        return ZERO
    first = max(range(len(z)), key=z.__getitem__)
    return shift(c, sub(z[first], z[t]), tail(c, z, first))


def soft_cross_entropy(c: Arithmetic, z: Sequence[mpf], q: Sequence[mpf]) -> V:
    """sum_c q_c (logsumexp(z) - z_c) = sum_c q_c (m - z_c) + (sum_c q_c) tail: an
    exact head and one enclosed tail."""
    if any(is_nan(v) for v in (*z, *q)):
        return NAN
    if INF not in z and -INF in z and all_finite(q):
        # A logit at -inf drops out of logsumexp; its own gap is +inf, weighed by its q.
        dropped = [qc for zc, qc in zip(z, q) if zc == -INF and qc != 0]
        if dropped:
            return extended_total([INF if qc > 0 else -INF for qc in dropped])
        kept = [(zc, qc) for zc, qc in zip(z, q) if zc != -INF]
        return soft_cross_entropy(c, [zc for zc, _ in kept], [qc for _, qc in kept]) if kept else NAN
    gaps = lse_gaps(c, z)
    if not all_finite(z) or not all_finite(q):
        terms = [ZERO if qc == 0 else _weighted_limit(qc, g) for qc, g in zip(q, gaps)]
        limit = infinite_sum([t for t in terms if isinstance(t, mpf)])
        if limit is not None:
            return limit
        return combine(c, [t for t in terms if isinstance(t, mpf)],
                       [c.num(qc) * as_value(c, g) for qc, g in zip(q, gaps) if qc and not isinstance(g, mpf)])
    m = max(z)
    head = exact_total([mul(qc, sub(m, zc)) for qc, zc in zip(q, z)])
    weight = exact_total(list(q))
    if len(z) == 1 or weight == 0:
        return head
    return shift(c, head, c.num(weight) * tail(c, z, z.index(m)))


def _weighted_limit(weight: mpf, gap: V) -> V:
    """weight * gap where one of them is not finite (the gap is >= 0)."""
    if not mpmath.isfinite(weight):
        if gap is ZERO:
            return NAN  # weight * 0 with an unbounded weight: no limit
        return weight
    if isinstance(gap, mpf) and not mpmath.isfinite(gap):
        return gap if is_nan(gap) else (INF if weight > 0 else -INF)
    return gap  # finite weight, finite gap: computed by the caller


@exact
def nll(c: Arithmetic, log_probs: Sequence[mpf], t: int) -> mpf:
    return neg(log_probs[t])


def categorical_ce(c: Arithmetic, p: Sequence[mpf], q: Sequence[mpf]) -> V:
    """-sum_c q_c log p_c of the row as given (not renormalised); ``p`` is the input."""
    exact_terms, terms = [], []
    for pc, qc in zip(p, q):
        if is_nan(pc) or is_nan(qc) or pc < 0:
            return NAN
        log_p = log_of(c, pc)
        if qc == 0 or log_p is ZERO:
            continue
        if isinstance(log_p, mpf) or not mpmath.isfinite(qc):
            exact_terms.append(_product_limit(neg(qc), log_p if isinstance(log_p, mpf) else sub(pc, ONE)))
        else:
            terms.append(c.num(neg(qc)) * log_p)
    return combine(c, exact_terms, terms)


def _product_limit(a: mpf, b: mpf) -> mpf:
    """a * b where one of them is infinite and neither is zero: only the signs count."""
    return INF if (a > 0) == (b > 0) else -INF


def kl_div(c: Arithmetic, q: Sequence[mpf], p: Sequence[mpf]) -> V:
    """KL(p || q) = sum_c p_c log(p_c / q_c) for one row; ``q`` is the prediction
    (input), ``p`` the target."""
    exact_terms, terms = [], []
    for qc, pc in zip(q, p):
        if is_nan(pc) or is_nan(qc) or pc < 0 or qc < 0:
            return NAN
        if pc == 0 or (pc == qc and mpmath.isfinite(pc)):
            continue
        if qc == 0 or pc == INF:
            exact_terms.append(NAN if qc == INF else INF)
        elif qc == INF:
            exact_terms.append(-INF)
        elif absolute(sub(pc, qc)) < half(qc):
            terms.append(c.num(pc) * c.log1p(c.div(sub(pc, qc), qc)))  # p close to q: no cancellation
        else:
            terms.append(c.num(pc) * c.log(c.div(pc, qc)))
    return combine(c, exact_terms, terms)


@exact
def multi_margin(c: Arithmetic, s: Sequence[mpf], t: int, margin: mpf) -> V:
    gap = sub(margin, s[t])
    terms = [max_or_zero(add(gap, sj)) for j, sj in enumerate(s) if j != t]
    total = extended_total(terms)
    return total if not mpmath.isfinite(total) else ratio(total, mpf(len(s)))


@exact
def categorical_hinge(c: Arithmetic, s: Sequence[mpf], t: int) -> mpf:
    others = [sj for j, sj in enumerate(s) if j != t]
    if any(is_nan(v) for v in others):
        return NAN
    if not others:
        return ZERO
    return max_or_zero(sub(add(ONE, max(others)), s[t]))


def squared_distance(a: Sequence[mpf], b: Sequence[mpf]) -> mpf:
    """|a - b|^2, exact (the limit for non-finite rows)."""
    return extended_total([mul(d, d) for d in (sub(u, v) for u, v in zip(a, b))])


def margin_gap(c: Arithmetic, d2: mpf, margin: mpf) -> Any:
    """max(0, m - d) for d = sqrt(d2) < m, as (m^2 - d^2) / (m + d): exact numerator,
    so no cancellation near d = m."""
    return c.num(sub(mul(margin, margin), d2)) / (c.num(margin) + c.sqrt(c.num(d2)))


def contrastive(c: Arithmetic, x1: Sequence[mpf], label: mpf, x2: Sequence[mpf], margin: mpf) -> V:
    """(l d^2 + (1-l) max(0, m - d)^2) / 2 with d = |x1 - x2|; ``label`` is the target."""
    d2 = squared_distance(x1, x2)
    if is_nan(d2) or is_nan(label):
        return NAN
    pull = sub(ONE, label)
    active = mpmath.isfinite(d2) and mul(margin, margin) > d2
    if not mpmath.isfinite(d2) or not mpmath.isfinite(label):
        if not mpmath.isfinite(d2):
            return ZERO if label == 0 else _product_limit(label, d2)
        return NAN  # an unbounded label weighs two finite terms
    pulled = half(mul(label, d2))
    if not active or pull == 0:
        return pulled
    gap = margin_gap(c, d2, margin)
    return c.num(pulled) + c.num(half(pull)) * (gap * gap)


def cosine_similarity(c: Arithmetic, x: Sequence[mpf], y: Sequence[mpf]) -> V:
    """-x.y / (|x| |y|) from the exact dot product and exact squared norms: one
    square root and one division round. A zero row gives 0/0 = nan; a row holding
    an infinity has no limit (the direction depends on how it grows): nan."""
    if not all_finite(x) or not all_finite(y):
        return NAN
    dot = exact_total([mul(a, b) for a, b in zip(x, y)])
    xx, yy = (exact_total([mul(a, a) for a in row]) for row in (x, y))
    if xx == 0 or yy == 0:
        return NAN
    if dot == 0:
        return ZERO
    return c.num(neg(dot)) / c.sqrt(c.num(mul(xx, yy)))


def triplet_margin(c: Arithmetic, a: Sequence[mpf], p: Sequence[mpf], n: Sequence[mpf], margin: mpf) -> V:
    """max(0, |a - p| - |a - n| + margin), the distance difference written as
    (S_p - S_n) / (|a - p| + |a - n|) with exact squared distances S: it does not
    cancel when the two distances are close."""
    s_p, s_n = squared_distance(a, p), squared_distance(a, n)
    if is_nan(s_p) or is_nan(s_n):
        return NAN
    if not (mpmath.isfinite(s_p) and mpmath.isfinite(s_n)):
        return NAN if s_p == s_n else (INF if s_p == INF else ZERO)
    if s_p == s_n:
        return max_or_zero(margin)
    difference = c.num(sub(s_p, s_n)) / (c.sqrt(c.num(s_p)) + c.sqrt(c.num(s_n)))
    if s_p > s_n and margin >= 0:
        return shift(c, margin, difference)  # both positive: the hinge is active
    return _hinge_of(c, difference + c.num(margin))


def _hinge_of(c: Arithmetic, v: Any) -> V:
    """max(0, v) of an enclosure: zero when it lies below 0, itself above, else the
    enclosure of both sides (rising precision narrows it until the side is known)."""
    lower, upper = (mpmath.mp.make_mpf(e) for e in c.endpoints(v))
    if upper < 0:
        return ZERO
    if lower >= 0:
        return v
    return c.between(ZERO, upper)


@exact
def margin_ranking(c: Arithmetic, x1: mpf, y: mpf, x2: mpf, margin: mpf) -> mpf:
    return max_or_zero(add(mul(neg(y), sub(x1, x2)), margin))


@exact
def l2_penalty(c: Arithmetic, w: mpf) -> mpf:
    return mul(w, w)


@exact
def l1_penalty(c: Arithmetic, w: mpf) -> mpf:
    return absolute(w)
