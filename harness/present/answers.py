"""The report's first screen: one answer per loss to the question users come with,
"which framework and dtype for my loss, and what do I give up?".

Each row holds `recommend`'s choice on typical inputs under a strict bound (4 ulp
in the choice's own dtype) and under a loose one (a relative error of 1e-3: three
correct digits), the strict choice's speed, and the one warning about that choice
that matters most, first found of: a regime where it fails or breaks (an
unexpected non-finite result, or half its digits lost), a gradient far worse than
its value, a silent upcast or a clamp the conventions atlas found.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.measure.deviations import CLAMPED
from harness.model.spec import ALL_REGIMES
from harness.present.recommend import Candidate, recommend
from harness.present.scales import BANDS, backward_ratio, band, far_worse_backward

Row = Mapping[str, Any]
STRICT_ULP = 4.0
LOOSE_REL = 1e-3


@dataclass(frozen=True)
class Answer:
    loss: str
    strict: str  # the choice's label and worst error, or why there is none
    loose: str
    speed: str
    warning: str

    COLUMNS = ("loss", "strict", "loose", "speed", "warning")
    TITLES = ("loss", f"within {STRICT_ULP:g} ulp (typical inputs)", f"within {LOOSE_REL:g} relative",
              "speed of the first", "what you give up")


def _described(c: Candidate | None, unit: str) -> str:
    return "nothing measured qualifies" if c is None else f"{c.label} ({c.error:.3g} {unit})"


def _is(row: Row, c: Candidate) -> bool:
    return (row["framework"], row["impl"], row["dtype"], row["mode"]) == (c.framework, c.impl, c.dtype, c.mode)


def warning(c: Candidate, cells: Sequence[Row], gradients: Sequence[Row], atlas: Sequence[Mapping[str, Any]]) -> str:
    """The one warning about choice ``c`` that matters most (see the module docstring),
    from the cells, gradients and atlas entries of its loss."""
    mine = [r for r in cells if _is(r, c)]
    for regime in [g for g in ALL_REGIMES if any(r["regime"] == g for r in mine)]:  # edge inputs last
        here = [r for r in mine if r["regime"] == regime]
        failed = [r for r in here if r["status"] != "ok"]
        if failed:
            return f"fails on {regime} inputs: {failed[0]['error'] or failed[0]['status']}"
        if any(r["unexpected_nonfinite"] for r in here):
            return f"unexpected non-finite results on {regime} inputs"
    worst = max((r for r in mine if r["status"] == "ok" and r["max_ulp"] is not None), key=lambda r: r["max_ulp"],
                default=None)
    if worst is not None and band(worst["max_ulp"], c.dtype) == len(BANDS) - 1:  # past 2^(p/2) ulp
        return f"loses half its digits or more on {worst['regime']} inputs ({worst['max_ulp']:.3g} ulp)"
    for g in gradients:
        if _is(g, c) and far_worse_backward(g):
            return f"its gradient is {backward_ratio(g):.3g}x worse than its value ({g['regime']} inputs)"
    if c.result_dtype != c.dtype:
        return f"silently computes in {c.result_dtype}"
    for entry in atlas:
        if (entry["framework"], entry["impl"]) == (c.framework, c.impl):
            clamped = [p for p in entry["edges"] if p["deviation"] == CLAMPED]
            if clamped:
                return f"clamps: {len(clamped)} edge input(s) give a finite loss where it is infinite (atlas)"
    return "none found"


def answers(losses: Iterable[str], cells: Sequence[Row], gradients: Sequence[Row],
            atlas: Sequence[Mapping[str, Any]]) -> list[Answer]:
    """One answer per loss that has stored cells on the CPU."""
    found = []
    for loss in losses:
        mine = [r for r in cells if r["loss"] == loss and r["device"] == "cpu"]
        if not mine:
            continue
        strict = recommend(mine, loss, "ulp", STRICT_ULP)
        loose = recommend(mine, loss, "rel", LOOSE_REL)
        choice = strict.choice or loose.choice
        speed = "-"
        if strict.choice is not None and strict.choice.seconds is not None:
            speed = f"{strict.choice.seconds * 1e6:.3g} us per call at {strict.size:g} elements"
        elif strict.choice is not None:
            speed = "not timed (choices ranked by accuracy)"
        advice = warning(choice, mine, [g for g in gradients if g["loss"] == loss],
                         [e for e in atlas if e["loss"] == loss and e["dtype"] == choice.dtype]) \
            if choice is not None else "no choice meets either bound"
        found.append(Answer(loss, _described(strict.choice, "ulp"), _described(loose.choice, "relative"), speed,
                            advice))
    return found
