"""Precision escalation: cases that need more than the starting precision, and a
case that is honestly reported unsettled."""
from __future__ import annotations

import mpmath
import numpy as np

from harness.model import registry
from harness.measure.evaluate import compute_reference
from reference import escalation
from reference.formats import FORMATS, round_mpf

EPS = 2.0**-30
# KL(p || q) with q = p +- eps: the two row terms cancel down to about 2 eps^2.
CLOSE_ROWS = {"input": np.array([[0.5 + EPS, 0.5 - EPS]]), "target": np.array([[0.5, 0.5]])}


def _closed_form() -> float:
    """KL = -log(1 - 4 eps^2) / 2, computed independently at 2000 bits."""
    with mpmath.workprec(2000):
        return round_mpf(-mpmath.log1p(-4 * mpmath.mpf(EPS) ** 2) / 2, "float64")


def test_cancellation_escalates_past_the_first_comparison() -> None:
    spec = registry.get("kl_div")
    (ref,) = compute_reference(spec, CLOSE_ROWS, {}, "sum", "float64")
    assert ref.settled
    assert ref.precision > 2 * escalation.START_PREC  # 80 and 160 bits disagreed
    assert round_mpf(ref.value, "float64") == _closed_form()


def test_unsettled_is_reported_not_guessed() -> None:
    spec = registry.get("kl_div")
    (ref,) = compute_reference(spec, CLOSE_ROWS, {}, "sum", "float64", max_prec=2 * escalation.START_PREC)
    assert not ref.settled


def test_items_escalate_independently() -> None:
    spec = registry.get("kl_div")
    rows = {"input": np.array([[0.5 + EPS, 0.5 - EPS], [0.25, 0.75]]), "target": np.array([[0.5, 0.5], [0.5, 0.5]])}
    refs = compute_reference(spec, rows, {}, "none", "float64")
    assert [r.precision for r in refs] == [4 * escalation.START_PREC, 2 * escalation.START_PREC]
    assert round_mpf(refs[0].value, "float64") == _closed_form()


def test_agreement_requires_the_target_format_too() -> None:
    # Two values that round to the same float64 but straddle a float16 rounding boundary.
    with mpmath.workprec(200):
        midpoint = 1 + mpmath.mpf(2) ** -11  # float16 tie between 1 and 1 + 2**-10
        below, above = midpoint - mpmath.mpf(2) ** -120, midpoint + mpmath.mpf(2) ** -120
    assert round_mpf(below, "float64") == round_mpf(above, "float64")
    assert not escalation.agree(below, above, FORMATS["float16"])
    assert escalation.agree(below, below, FORMATS["float16"])
