"""The reference against the literal textbook definitions evaluated at 20000 bits.

The reference formulas are rewritten to avoid cancellation at modest precision;
here each definition from DESIGN.md is evaluated as written, at a precision so
high that cancellation cannot matter for these inputs (|logits| <= 1e4, so
e^-|z| >= 2^-14427). Both must round to the same float64. This catches a
rewritten formula that is wrong in a way escalation cannot see (a cancellation
to an exact 0 or an infinity agrees with itself at every precision).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import mpmath
import pytest

from harness.model import registry
from harness.measure import regimes
from harness.measure.evaluate import compute_reference
from harness.measure.items import reference_items
from harness.model.spec import Layout
from reference.formats import round_mpf

LITERAL_PREC = 20000
mpf = mpmath.mpf


def _lse(z: Sequence[mpf]) -> mpf:
    return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))


def _xlogy(x: mpf, y: mpf) -> mpf:
    return mpf(0) if x == 0 else x * mpmath.log(y)


def _norm(v: Sequence[mpf]) -> mpf:
    return mpmath.sqrt(mpmath.fsum(c**2 for c in v))


def _focal(p_t: mpf, gamma: mpf) -> mpf:
    return -((1 - p_t) ** gamma) * mpmath.log(p_t)


LITERAL: dict[str, Callable[..., mpf]] = {
    "mse": lambda x, y: (x - y) ** 2,
    "mae": lambda x, y: abs(x - y),
    "huber": lambda x, y, delta: (x - y) ** 2 / 2 if abs(x - y) <= delta else delta * (abs(x - y) - delta / 2),
    "smooth_l1": lambda x, y, beta: (x - y) ** 2 / (2 * beta) if abs(x - y) < beta else abs(x - y) - beta / 2,
    "log_cosh": lambda x, y: mpmath.log(mpmath.cosh(x - y)),
    "bce": lambda p, y: -(_xlogy(y, p) + _xlogy(1 - y, 1 - p)),
    "bce_logits": lambda z, y: -(_xlogy(y, 1 / (1 + mpmath.exp(-z))) + _xlogy(1 - y, 1 - 1 / (1 + mpmath.exp(-z)))),
    "hinge": lambda s, y: max(mpf(0), 1 - y * s),
    "squared_hinge": lambda s, y: max(mpf(0), 1 - y * s) ** 2,
    "cross_entropy": lambda z, t: _lse(z) - z[t],
    "soft_cross_entropy": lambda z, q: mpmath.fsum(qc * (_lse(z) - zc) for qc, zc in zip(q, z)),
    "nll": lambda l, t: -l[t],
    "kl_div": lambda q, p: mpmath.fsum(_xlogy(pc, pc / qc) for qc, pc in zip(q, p)),
    "multi_margin": lambda s, t, margin: mpmath.fsum(max(mpf(0), margin - s[t] + sj)
                                                     for j, sj in enumerate(s) if j != t) / len(s),
    "categorical_hinge": lambda s, t: max(mpf(0), 1 + max(sj for j, sj in enumerate(s) if j != t) - s[t]),
    "msle": lambda x, y: (mpmath.log1p(x) - mpmath.log1p(y)) ** 2,
    "poisson_nll": lambda x, y: x - _xlogy(y, x),
    "gaussian_nll": lambda x, y, var: (mpmath.log(var) + (x - y) ** 2 / var) / 2,
    "categorical_ce": lambda p, q: -mpmath.fsum(_xlogy(qc, pc) for pc, qc in zip(p, q)),
    "soft_margin": lambda s, y: mpmath.log(1 + mpmath.exp(-y * s)),
    "focal": lambda z, y, gamma: _focal(1 / (1 + mpmath.exp(-z)) if y == 1 else 1 - 1 / (1 + mpmath.exp(-z)), gamma),
    "cosine_similarity": lambda x, y: -mpmath.fsum(a * b for a, b in zip(x, y)) / (_norm(x) * _norm(y)),
    "triplet_margin": lambda a, p, n, margin: max(mpf(0), _norm([u - v for u, v in zip(a, p)])
                                                  - _norm([u - v for u, v in zip(a, n)]) + margin),
    "margin_ranking": lambda x1, y, x2, margin: max(mpf(0), -y * (x1 - x2) + margin),
    "l2_penalty": lambda w: w**2,
    "l1_penalty": lambda w: abs(w),
    "contrastive": lambda x1, l, x2, margin: (l * mpmath.fsum((a - b) ** 2 for a, b in zip(x1, x2))
                                              + (1 - l) * max(mpf(0), margin - mpmath.sqrt(
                                                  mpmath.fsum((a - b) ** 2 for a, b in zip(x1, x2)))) ** 2) / 2,
}
REGIMES = ("typical", "saturated", "cancellation", "near_overflow")
# Literal forms that exponentiate an input need ~1.44 |z| bits; near_overflow logits
# reach 1e6 and beyond, past what the literal evaluation can hold.
EXPONENTIATED = {"log_cosh", "bce_logits", "cross_entropy", "soft_cross_entropy", "soft_margin", "focal"}
CASES = [(spec.name, regime, dtype) for spec in registry.iter_losses() for regime in REGIMES
         if regime in spec.regimes and not (regime == "near_overflow" and spec.name in EXPONENTIATED)
         for dtype in ("float16", "float32")]


def test_every_loss_has_a_literal_oracle() -> None:
    assert set(LITERAL) == set(registry.names())


@pytest.mark.parametrize("loss, regime, dtype", CASES, ids=["-".join(c) for c in CASES])
def test_reference_matches_the_literal_definition(loss: str, regime: str, dtype: str) -> None:
    spec = registry.get(loss)
    arrays = regimes.generate(spec, dtype, regime, seed=11, size=60 if spec.layout is Layout.ELEMENTWISE else 100)
    params = spec.resolve_params({})
    refs = compute_reference(spec, arrays, params, "none")
    with mpmath.workprec(LITERAL_PREC):
        literal = [LITERAL[loss](*item, **{k: mpf(v) for k, v in params.items()})
                   for item in reference_items(spec, arrays)]
    got = [round_mpf(r.value, "float64") for r in refs]
    expected = [round_mpf(v, "float64") for v in literal]
    assert got == expected
    assert all(r.settled for r in refs)
