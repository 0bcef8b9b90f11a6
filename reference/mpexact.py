"""Exact and guarded building blocks of the mp loss formulas (reference.formulas)
and their derivatives: rational steps without rounding, logarithms and
exponentials written so that no step cancels, sums that are exact, and the
``@exact`` marks that let one evaluation settle an item."""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import mpmath
from mpmath.libmp import libelefun, libmpf

mpf = mpmath.mpf
ZERO = mpf(0)
ONE = mpf(1)


# --- exact building blocks -------------------------------------------------

def exact(formula: Callable[..., mpf]) -> Callable[..., mpf]:
    """Mark a formula whose items are computed with no rounding at all."""
    formula.exact_when = lambda **params: True  # type: ignore[attr-defined]
    return formula


def exact_when(condition: Callable[..., bool]) -> Callable[[Callable[..., mpf]], Callable[..., mpf]]:
    """Mark a formula that is exact for the parameters ``condition`` accepts."""
    def mark(formula: Callable[..., mpf]) -> Callable[..., mpf]:
        formula.exact_when = condition  # type: ignore[attr-defined]
        return formula
    return mark


def is_exact(formula: Callable[..., mpf]) -> bool:
    """Whether ``formula`` (possibly a functools.partial binding its parameters) is exact."""
    base = getattr(formula, "func", formula)
    condition = getattr(base, "exact_when", None)
    return condition is not None and bool(condition(**getattr(formula, "keywords", {})))


def is_power_of_two(x: mpf) -> bool:
    _, man, _, _ = x._mpf_
    return x > 0 and man == 1


def guard_log() -> mpf:
    """ln(2**(prec + 16)): exp(-t) below 2**-(prec+16) of something is below working precision."""
    return _guard_log_at(mpmath.mp.prec)


@functools.lru_cache(maxsize=32)
def _guard_log_at(prec: int) -> mpf:
    with mpmath.workprec(prec):
        return (prec + 16) * mpmath.ln2


def sub(a: mpf, b: mpf) -> mpf:
    """a - b without rounding."""
    return mpmath.fsub(a, b, exact=True)


def add(a: mpf, b: mpf) -> mpf:
    return mpmath.fadd(a, b, exact=True)


def mul(a: mpf, b: mpf) -> mpf:
    return mpmath.fmul(a, b, exact=True)


def neg(a: mpf) -> mpf:
    """-a without rounding (unary minus on an mpf rounds to the working precision)."""
    return mpmath.fneg(a, exact=True)


def absolute(a: mpf) -> mpf:
    """|a| without rounding (abs() on an mpf rounds to the working precision)."""
    return neg(a) if a < 0 else a


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


def exact_total(terms: Sequence[mpf]) -> mpf:
    """Sum of ``terms`` with no rounding at all (dyadic terms sum exactly)."""
    return mpmath.mp.make_mpf(libmpf.mpf_sum([t._mpf_ for t in terms], 0))


def weighted(weight: mpf, value: mpf) -> mpf:
    """weight * value, with a zero weight giving zero even for infinite value."""
    return ZERO if weight == 0 else weight * value


def log(x: mpf) -> mpf:
    """mpmath.log without its generic wrapper (hot in the sweeps); nan below 0."""
    if x < 0 or mpmath.isnan(x):
        return mpmath.nan
    return mpmath.mp.make_mpf(libelefun.mpf_log(x._mpf_, mpmath.mp.prec, "n"))


def log1p(u: mpf) -> mpf:
    """log(1 + u) as the log of the exact 1 + u (mpmath's log keeps full relative
    accuracy near 1, and is several times faster than mpmath.log1p). Below
    2**-(prec+8), log1p(u) = u to working precision (and 1 + u would not fit)."""
    sign, man, exponent, bitcount = u._mpf_
    if man and exponent + bitcount < -(mpmath.mp.prec + 8):
        return +u
    return log(add(ONE, u))


def exp(x: mpf) -> mpf:
    """mpmath.exp without its generic wrapper (hot in the sweeps)."""
    return mpmath.mp.make_mpf(libelefun.mpf_exp(x._mpf_, mpmath.mp.prec, "n"))


def max_or_zero(a: mpf) -> mpf:
    """max(0, a), nan propagating."""
    if mpmath.isnan(a):
        return a
    return a if a > 0 else ZERO


def softplus(t: mpf) -> mpf:
    """log(1 + exp(t)) with no overflow and no cancellation."""
    if mpmath.isnan(t):
        return t
    if t > guard_log():
        return t  # log1p(exp(-t)) < 2**-(prec+16) * t
    return max_or_zero(t) + log1p(exp(-abs(t)))


def all_finite(values: Sequence[mpf]) -> bool:
    return all(mpmath.isfinite(v) for v in values)


def logsumexp_minus(z: Sequence[mpf], classes: Sequence[int] | None = None) -> list[mpf]:
    """[logsumexp(z) - z_c for c in classes (default: all)], each accurate to the
    working precision.

    With m = max(z) attained at k*, logsumexp(z) - z_c = (m - z_c) + tail, tail =
    log1p(sum_{k != k*} exp(z_k - m)): both parts are non-negative, so nothing
    cancels. The tail is not computed where it is provably below the working
    precision of an exact, larger m - z_c. Non-finite rows use the literal formula.
    """
    wanted = range(len(z)) if classes is None else classes
    if not all_finite(z):
        lse = mpmath.log(exact_sum([mpmath.exp(v) for v in z]))
        return [lse - z[c] for c in wanted]
    top = max(range(len(z)), key=z.__getitem__)
    m = z[top]
    gaps = [sub(v, m) for k, v in enumerate(z) if k != top]
    if not gaps:
        return [ZERO for _ in wanted]
    largest_gap = max(gaps)
    heads = [sub(m, z[c]) for c in wanted]
    guard = guard_log()
    needed = [True] * len(heads)
    if largest_gap < -2 * guard:
        # tail <= C exp(largest_gap): skip it where it is below precision of the head.
        with mpmath.workprec(32):
            log_tail_bound = largest_gap + mpmath.log(len(z)) + 1
            needed = [not head or log_tail_bound > mpmath.log(head) - guard for head in heads]
        if not any(needed):
            return heads
    cutoff = largest_gap - guard  # terms this far below the largest cannot reach the tail
    tail = log1p(exact_sum([exp(g) for g in gaps if g >= cutoff]))
    return [head + tail if need else head for head, need in zip(heads, needed)]
