"""Which (framework, impl, dtype) to use for a loss: the fastest measured choice
that meets an accuracy bound, from the stored cells only. Where nothing was
timed at the size asked (a sweep without --time), the choices that meet the
bound are ranked by accuracy instead, and the recommendation says speed was
not measured.

A choice's accuracy is what a user meets: the worse of its per-element error
and the error of its default reduction, in ULP or relative. A choice is excluded,
with its reason, when its cell failed, produced unexpected non-finite values,
has no finite result to measure, misses the bound, or was not timed; choices
seen for the loss elsewhere but not at this size, device and regime are listed
as not measured.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

Row = dict[str, Any]


def choice_label(framework: str, impl: str, dtype: str, mode: str = "eager") -> str:
    """How a choice is named in recommendations, reports and their tables (a
    compiled choice says so)."""
    return f"{framework}:{impl} {dtype}" + (f" ({mode})" if mode != "eager" else "")


@dataclass(frozen=True)
class Candidate:
    framework: str
    impl: str
    dtype: str
    seconds: float | None  # forward median per call; None where speed was not measured
    error: float  # worst ULP or relative error, as bounded
    result_dtype: str  # what the framework returned; not the dtype when it silently upcasts
    mode: str = "eager"

    @property
    def label(self) -> str:
        return choice_label(self.framework, self.impl, self.dtype, self.mode)


@dataclass(frozen=True)
class Excluded:
    label: str
    reason: str


@dataclass(frozen=True)
class Recommendation:
    loss: str
    size: int | None
    device: str
    regime: str
    metric: str  # "ulp" or "rel"
    bound: float
    qualifying: tuple[Candidate, ...]  # best first: the choice, then the runners-up
    excluded: tuple[Excluded, ...]
    timed: bool = True  # False: nothing was timed at this size, so ranked by accuracy

    @property
    def choice(self) -> Candidate | None:
        return self.qualifying[0] if self.qualifying else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["choice"] = asdict(self.choice) if self.choice else None
        data["runners_up"] = data.pop("qualifying")[1:]
        return data


def accuracy(row: Row, metric: str) -> float | None:
    """The worse of the cell's per-element and reduced error (None if neither was measured)."""
    pair = (row["max_ulp"], row["reduced_ulp"]) if metric == "ulp" else (row["max_rel"], row["reduced_rel"])
    measured = [v for v in pair if v is not None]
    return max(measured) if measured else None


def recommend(rows: Iterable[Row], loss: str, metric: str, bound: float, size: int | None = None,
              device: str = "cpu", regime: str = "typical", mode: str | None = None) -> Recommendation:
    """Rank the stored cells of ``loss`` at ``size`` (default: its largest timed size),
    of ``mode`` (None: eager and compiled choices side by side)."""
    mine = [r for r in rows if r["loss"] == loss and r["device"] == device and mode in (None, r["mode"])]
    here = [r for r in mine if r["regime"] == regime]
    if size is None:
        timed_sizes = [r["size"] for r in here if r["forward_seconds"] is not None]
        size = max(timed_sizes) if timed_sizes else max((r["size"] for r in here), default=None)
    timed = any(r["size"] == size and r["forward_seconds"] is not None for r in here)
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for r in mine:
        cells = groups.setdefault((r["framework"], r["impl"], r["dtype"], r["mode"]), [])  # every choice is listed
        if r["size"] == size and r["regime"] == regime:
            cells.append(r)
    qualifying, excluded = [], []
    for (framework, impl, dtype, mode_), cells in sorted(groups.items()):
        label = choice_label(framework, impl, dtype, mode_)
        reason = _exclusion(cells, metric, bound, timed)
        if reason:
            excluded.append(Excluded(label, reason))
            continue
        seconds = statistics.median(r["forward_seconds"] for r in cells) if timed else None
        qualifying.append(Candidate(framework, impl, dtype, seconds, max(accuracy(r, metric) or 0.0 for r in cells),
                                    cells[0]["result_dtype"], mode_))
    qualifying.sort(key=lambda c: (c.seconds, c.error) if timed else (c.error, c.label))
    return Recommendation(loss, size, device, regime, metric, bound, tuple(qualifying), tuple(excluded), timed)


def _exclusion(cells: list[Row], metric: str, bound: float, timed: bool) -> str | None:
    """Why a choice cannot be recommended, or None if it can."""
    if not cells:
        return "not measured at this size, device and regime"
    failed = [r for r in cells if r["status"] != "ok"]
    if failed:
        return f"{failed[0]['status']}: {failed[0]['error']}"
    nonfinite = sum(r["unexpected_nonfinite"] or 0 for r in cells)
    if nonfinite:
        return f"non-finite: {nonfinite} unexpected non-finite result(s)"
    errors = [accuracy(r, metric) for r in cells]
    if any(e is None for e in errors):
        return "no finite, settled result to measure"
    worst = max(e for e in errors if e is not None)
    if worst > bound:
        unit = " ulp" if metric == "ulp" else " relative"
        return f"too inaccurate: worst {worst:.3g}{unit} > {bound:g}"
    if timed and any(r["forward_seconds"] is None for r in cells):
        return "not timed (run the sweep with --time)"
    return None
