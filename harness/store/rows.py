"""The records the store holds, validated when built: a row that cannot happen
(a negative ULP or relative error, a negative count, more items measured than
there are) is refused on write and detected on read, since SQLite keeps no
checksums and a flipped byte would otherwise be served as a result.

Each column's constraint is written once, as field metadata; the schema's CHECK
constraints (harness.store.schema) and the Python validation both come from it.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

NONNEGATIVE = ">= 0"


class BadRow(ValueError):
    """A row whose values cannot come from a measurement."""


def _nonnegative() -> Any:
    return field(default=None, metadata={"check": NONNEGATIVE})


def _timing(check: str | None = NONNEGATIVE, shown: bool = False) -> Any:
    """A timing column: null where the cell was not timed (see harness.measure.timing)."""
    return field(default=None, metadata={"check": check, "timing": True, "shown": shown})


@dataclass(frozen=True)
class CellKey:
    """What was measured: a cell is unique by it (the framework's version included)."""

    loss: str
    params: str  # canonical JSON
    framework: str
    framework_version: str
    impl: str
    dtype: str
    device: str
    regime: str
    size: int
    width: int
    seed: int
    mode: str = "eager"  # how the framework ran it: eager, or compiled (harness.model.spec.MODES)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int if f.type == "int" else str) or isinstance(value, bool):
                raise BadRow(f"{f.name} = {value!r} is not {'an integer' if f.type == 'int' else 'text'}")
        if min(self.size, self.width) < 1 or self.seed < 0:
            raise BadRow(f"size {self.size}, width {self.width}, seed {self.seed}: sizes and widths are positive, "
                         "seeds non-negative")


def _validate(row: Any) -> None:
    """Column constraints, then the row's own relations (its RELATIONS)."""
    for f in fields(row):
        value = getattr(row, f.name)
        if f.metadata.get("check") == NONNEGATIVE and value is not None and not value >= 0:
            raise BadRow(f"{f.name} = {value!r} is negative (or nan)")
    if row.status not in row.STATUSES:
        raise BadRow(f"status {row.status!r} is not one of {', '.join(row.STATUSES)}")
    for left, right in row.RELATIONS:
        a, b = getattr(row, left), getattr(row, right)
        if a is not None and b is not None and a > b:
            raise BadRow(f"{left} = {a} exceeds {right} = {b}")


@dataclass(frozen=True)
class Measured:
    """What value and gradient rows share: the cell, its status, and the error
    summary over what could be measured."""

    # The table a row of this kind is stored in, how a second row of the same key
    # is treated, the statuses it may have, and (left, right) columns with left <= right.
    TABLE: ClassVar[str]
    ON_CONFLICT: ClassVar[str]
    STATUSES: ClassVar[tuple[str, ...]]
    RELATIONS: ClassVar[tuple[tuple[str, str], ...]] = ()

    key: CellKey
    status: str
    error: str | None = None
    result_dtype: str | None = None
    max_ulp: float | None = _nonnegative()
    p99_ulp: float | None = _nonnegative()
    median_ulp: float | None = _nonnegative()
    max_rel: float | None = _nonnegative()
    nonfinite: str | None = None  # JSON counts per class
    unexpected_nonfinite: int | None = _nonnegative()
    ref_unsettled: int | None = _nonnegative()
    max_bits: float | None = _nonnegative()  # bits of error (schema 8; NULL in older rows)

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True)
class CellRow(Measured):
    """One measured cell. ``status`` is ok, error (the framework raised), timeout,
    or crashed (the worker died); metrics are null unless status is ok.
    Element metrics summarise reduction 'none' over settled, finite items;
    ``reduced_*`` is the loss's default reduction (the mean; the sum for
    penalties) against that reduction's own reference. The timing columns are the
    default-reduction call (forward) and its gradient with respect to input
    (backward); null where the cell was not timed, or (backward) where the impl
    has no gradient."""

    TABLE = "cells"  # of the loss value (harness.measure.quantity.LossValue)
    # A timed row completes an untimed one, and a new measurement replaces a failed
    # one (--retry-failed); otherwise the first row stands.
    ON_CONFLICT = ("DO UPDATE SET {updates} "
                   "WHERE (cells.forward_seconds IS NULL AND excluded.forward_seconds IS NOT NULL) "
                   "OR cells.status != 'ok'")
    STATUSES = ("ok", "error", "timeout", "crashed")
    RELATIONS = (("items_measured", "items"),)

    items: int | None = _nonnegative()
    items_measured: int | None = _nonnegative()
    reduced_value: float | None = None
    reduced_reference: float | None = None
    reduced_ulp: float | None = _nonnegative()
    reduced_rel: float | None = _nonnegative()
    reduced_nonfinite: str | None = None
    reduced_bits: float | None = _nonnegative()
    seconds: float | None = _nonnegative()
    forward_seconds: float | None = _timing(shown=True)  # median seconds per call
    forward_stdev: float | None = _timing()
    forward_loops: int | None = _timing()  # calls per sample
    forward_samples: int | None = _timing()
    forward_bytes: int | None = _timing()  # minimum bytes moved per call
    elements_per_s: float | None = _timing(shown=True)
    forward_gbps: float | None = _timing(shown=True)
    forward_bw_fraction: float | None = _timing(shown=True)
    backward_method: str | None = _timing(None, shown=True)  # how the gradient was taken; 'none': forward only
    backward_error: str | None = _timing(None, shown=True)  # the gradient call raised (the forward figures stand)
    backward_seconds: float | None = _timing(shown=True)
    backward_stdev: float | None = _timing()
    backward_loops: int | None = _timing()
    backward_bytes: int | None = _timing()
    backward_gbps: float | None = _timing()
    backward_bw_fraction: float | None = _timing(shown=True)
    bandwidth_limit_gbps: float | None = _timing()  # the device's measured limit the fractions use
    # Compiled cells: the first call of a fresh compilation, caches emptied (cold) and kept (warm).
    compile_cold_seconds: float | None = _timing(shown=True)
    compile_warm_seconds: float | None = _timing(shown=True)


@dataclass(frozen=True)
class GradientRow(Measured):
    """The gradient of one cell's default-reduction loss with respect to input, per
    input element against the reference derivative. ``status`` is ok, error (the
    gradient raised), no_gradient (the impl has none), timeout or crashed. Metrics
    summarise the elements that have a derivative, a settled reference and a finite
    result; ``undefined`` counts the elements where the loss has no derivative (a
    corner: frameworks return a subgradient there, which is not judged)."""

    TABLE = "gradients"  # of the gradient (harness.measure.quantity.LossGradient)
    # A new measurement replaces a failed one (--retry-failed); otherwise the first row stands.
    ON_CONFLICT = "DO UPDATE SET {updates} WHERE gradients.status IN ('error', 'timeout', 'crashed')"
    STATUSES = ("ok", "error", "no_gradient", "timeout", "crashed")
    RELATIONS = (("elements_measured", "elements"), ("undefined", "elements"))

    reduction: str | None = None
    method: str | None = None
    elements: int | None = _nonnegative()
    elements_measured: int | None = _nonnegative()
    undefined: int | None = _nonnegative()


ROW_TYPES: tuple[type[Measured], ...] = (CellRow, GradientRow)
KEY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CellKey))
TIMING_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CellRow) if f.metadata.get("timing"))
SHOWN_TIMING_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CellRow) if f.metadata.get("shown"))


def row_columns(row_type: type[Measured]) -> tuple[str, ...]:
    """The row's own columns, in order (the key's columns come before them)."""
    return tuple(f.name for f in fields(row_type) if f.name != "key")


@dataclass(frozen=True)
class Stored(Mapping[str, Any]):
    """A row read back from the store, with the run that stored it. It reads as
    a flat mapping of column -> value for tables and exports; ``extra`` holds
    joined columns (a gradient row's forward max_ulp)."""

    run_id: int
    row: Measured
    extra: tuple[tuple[str, Any], ...] = ()

    @functools.cached_property
    def _flat(self) -> dict[str, Any]:
        values = {"run_id": self.run_id, **asdict(self.row.key)}
        values.update((name, getattr(self.row, name)) for name in row_columns(type(self.row)))
        values.update(self.extra)
        return values

    def __getitem__(self, name: str) -> Any:
        return self._flat[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat)

    def __len__(self) -> int:
        return len(self._flat)
