"""Two stores (or two runs of one) compared cell by cell, as asv compares two
commits: which cells became less or more accurate, slower or faster, failed or
were fixed, and which exist on one side only.

Cells are matched on their key without the framework version, since the version
is usually what changed between the two sides. Only changes beyond noise count:
a worst ULP error more than ``ulp_factor`` times the other side's and at least
1 ulp from it, a non-finite class that was not there before (expected infinities
and nans never count), and a forward or backward time more than ``time_factor``
times the other side's and more than 3 timer standard deviations from it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.measure import metrics
from harness.store import KEY_COLUMNS

MATCHED_ON = tuple(c for c in KEY_COLUMNS if c != "framework_version")
ULP_FACTOR = 2.0
ULP_MARGIN = 1.0  # ulp: a change smaller than this never counts
TIME_FACTOR = 1.1
STDEVS = 3.0
_EXPECTED = (metrics.EXPECTED_INF, metrics.EXPECTED_NAN)
_TIMES = (("forward", "forward_seconds", "forward_stdev"), ("backward", "backward_seconds", "backward_stdev"))


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a store, and optionally the run it is taken as of
    (the cells stored by that run and the runs before it)."""

    path: Path
    run_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> Side:
        """PATH or PATH:RUN_ID (a run id is a positive integer after the last colon)."""
        head, sep, tail = text.rpartition(":")
        if sep and head and tail.isdigit() and int(tail) > 0:
            return cls(Path(head), int(tail))
        return cls(Path(text))

    def __str__(self) -> str:
        return f"{self.path}:{self.run_id}" if self.run_id is not None else str(self.path)


@dataclass(frozen=True)
class Change:
    """One matched cell that changed: what changed and its value on each side."""

    cell: tuple[Any, ...]  # the MATCHED_ON values
    what: str  # max_ulp, nonfinite, status, forward_seconds, backward_seconds
    base: Any
    head: Any

    def to_json(self) -> dict[str, Any]:
        return {**dict(zip(MATCHED_ON, self.cell)), "what": self.what, "base": self.base, "head": self.head}


@dataclass(frozen=True)
class Comparison:
    base: Side
    head: Side
    matched: int
    less_accurate: tuple[Change, ...] = ()
    more_accurate: tuple[Change, ...] = ()
    failed: tuple[Change, ...] = ()
    fixed: tuple[Change, ...] = ()
    slower: tuple[Change, ...] = ()
    faster: tuple[Change, ...] = ()
    base_only: tuple[tuple[Any, ...], ...] = ()
    head_only: tuple[tuple[Any, ...], ...] = ()
    versions: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    GROUPS = ("less_accurate", "failed", "slower", "more_accurate", "fixed", "faster")
    WORSE = ("less_accurate", "failed", "slower")

    @property
    def worse(self) -> bool:
        return any(getattr(self, g) for g in self.WORSE)

    def to_json(self) -> dict[str, Any]:
        return {
            "base": str(self.base), "head": str(self.head), "matched": self.matched, "worse": self.worse,
            "framework_versions": {f: {"base": b, "head": h} for f, (b, h) in self.versions.items()},
            **{g: [c.to_json() for c in getattr(self, g)] for g in self.GROUPS},
            "base_only": [dict(zip(MATCHED_ON, k)) for k in self.base_only],
            "head_only": [dict(zip(MATCHED_ON, k)) for k in self.head_only],
        }


def as_of(rows: Iterable[Mapping[str, Any]], run_id: int | None) -> list[Mapping[str, Any]]:
    return [r for r in rows if run_id is None or r["run_id"] <= run_id]


def _unexpected_classes(row: Mapping[str, Any]) -> set[str]:
    counts = json.loads(row["nonfinite"]) if row["nonfinite"] else {}
    return {name for name, count in counts.items() if count and name not in _EXPECTED}


def _ulp_moved(before: float | None, after: float | None, factor: float) -> bool:
    """after is worse than before beyond noise (inf counts as worse than any finite error)."""
    if before is None or after is None:
        return False
    if math.isinf(after):
        return not math.isinf(before)
    return after > factor * before and after - before >= ULP_MARGIN


def _slower(base: Mapping[str, Any], head: Mapping[str, Any], seconds: str, stdev: str, factor: float) -> bool:
    before, after = base[seconds], head[seconds]
    if before is None or after is None:
        return False
    noise = STDEVS * max(base[stdev] or 0.0, head[stdev] or 0.0)
    return after > factor * before and after - before > noise


def compare(base: Side, base_rows: Iterable[Mapping[str, Any]], head: Side, head_rows: Iterable[Mapping[str, Any]],
            ulp_factor: float = ULP_FACTOR, time_factor: float = TIME_FACTOR) -> Comparison:
    before = {tuple(r[c] for c in MATCHED_ON): r for r in base_rows}
    after = {tuple(r[c] for c in MATCHED_ON): r for r in head_rows}
    groups: dict[str, list[Change]] = {g: [] for g in Comparison.GROUPS}
    for cell in sorted(before.keys() & after.keys(), key=repr):
        b, h = before[cell], after[cell]
        if (b["status"] == "ok") != (h["status"] == "ok"):
            groups["failed" if b["status"] == "ok" else "fixed"].append(
                Change(cell, "status", b["error"] or b["status"], h["error"] or h["status"]))
            continue
        if b["status"] != "ok":
            continue
        if _ulp_moved(b["max_ulp"], h["max_ulp"], ulp_factor):
            groups["less_accurate"].append(Change(cell, "max_ulp", b["max_ulp"], h["max_ulp"]))
        elif _ulp_moved(h["max_ulp"], b["max_ulp"], ulp_factor):
            groups["more_accurate"].append(Change(cell, "max_ulp", b["max_ulp"], h["max_ulp"]))
        appeared, vanished = _unexpected_classes(h) - _unexpected_classes(b), _unexpected_classes(b) - _unexpected_classes(h)
        if appeared:
            groups["less_accurate"].append(Change(cell, "nonfinite", b["nonfinite"], h["nonfinite"]))
        elif vanished:
            groups["more_accurate"].append(Change(cell, "nonfinite", b["nonfinite"], h["nonfinite"]))
        for name, seconds, stdev in _TIMES:
            if _slower(b, h, seconds, stdev, time_factor):
                groups["slower"].append(Change(cell, seconds, b[seconds], h[seconds]))
            elif _slower(h, b, seconds, stdev, time_factor):
                groups["faster"].append(Change(cell, seconds, b[seconds], h[seconds]))
    return Comparison(
        base, head, len(before.keys() & after.keys()), **{g: tuple(v) for g, v in groups.items()},
        base_only=tuple(sorted(before.keys() - after.keys(), key=repr)),
        head_only=tuple(sorted(after.keys() - before.keys(), key=repr)),
        versions=_versions(before.values(), after.values()),
    )


def _versions(base_rows: Iterable[Mapping[str, Any]], head_rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[list[str], list[str]]]:
    """Each framework's versions on either side, where they differ."""
    def by_framework(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for r in rows:
            found.setdefault(r["framework"], set()).add(r["framework_version"])
        return found

    b, h = by_framework(base_rows), by_framework(head_rows)
    return {f: (sorted(b.get(f, ())), sorted(h.get(f, ()))) for f in sorted(b.keys() | h.keys())
            if b.get(f) != h.get(f)}
