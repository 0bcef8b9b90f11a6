"""Declarative, validated records shared by every part of the harness."""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from harness.model.dtypes import DTYPES

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
DEVICES: tuple[str, ...] = ("cpu", "cuda")
# How a framework runs a loss: op by op (eager), or traced and compiled first
# (torch.compile, XLA through tf.function(jit_compile=True), jax.jit; PyTensor always).
MODES: tuple[str, ...] = ("eager", "compiled")
ALL_REGIMES: tuple[str, ...] = ("typical", "wide", "saturated", "near_overflow", "cancellation", "edge")


class Layout(str, Enum):
    """How a loss consumes its input: one value per element, or one per row."""

    ELEMENTWISE = "elementwise"
    ROWWISE = "rowwise"


class Domain(str, Enum):
    """The set an argument's values must lie in; drives validation and generation."""

    REAL = "real"
    NONNEGATIVE = "real >= 0"
    POSITIVE = "real > 0"
    PROBABILITY = "probability in [0, 1]"
    DISTRIBUTION = "probability row in [0, 1]"
    SIGN_LABEL = "label in {-1, +1}"
    BINARY_LABEL = "label in {0, 1}"
    CLASS_INDEX = "class index"

    @property
    def is_float(self) -> bool:
        return self is not Domain.CLASS_INDEX


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ArgSpec:
    """One tensor argument. ``per_row`` arguments of row-wise losses have shape [B];
    the others have the input's shape."""

    name: str
    domain: Domain
    per_row: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bad argument name {self.name!r}")
        if self.domain is Domain.CLASS_INDEX and not self.per_row:
            raise ValueError(f"argument {self.name!r}: class indices are one per row")


@dataclass(frozen=True)
class ParamSpec:
    """A scalar that changes the loss value (delta, beta, margin...)."""

    name: str
    default: float
    minimum: float = -math.inf
    minimum_inclusive: bool = True

    def validate(self, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"parameter {self.name} must be finite, got {value}")
        too_small = value < self.minimum if self.minimum_inclusive else value <= self.minimum
        if too_small:
            bound = ">=" if self.minimum_inclusive else ">"
            raise ValueError(f"parameter {self.name} must be {bound} {self.minimum:g}, got {value:g}")
        return float(value)


@dataclass(frozen=True)
class Cancellation:
    """What the ``cancellation`` regime does to a loss's inputs: it moves argument
    ``moves`` to within a few ulps of argument ``near``. ``how``: 'value' (onto the
    other's values), 'class_score' (every score of a row onto the score of its
    target class), 'sign_margin' (the score onto its label, so y * s is near 1)."""

    moves: str
    near: str
    how: str = "value"

    def __post_init__(self) -> None:
        if self.how not in ("value", "class_score", "sign_margin"):
            raise ValueError(f"unknown cancellation {self.how!r}")


TOWARD_TARGET = Cancellation("input", "target")


def pair(input: Domain, target: Domain) -> tuple[ArgSpec, ArgSpec]:
    """The (input, target) arguments most losses take; a class-index target is one per row."""
    return ArgSpec("input", input), ArgSpec("target", target, per_row=target is Domain.CLASS_INDEX)


@dataclass(frozen=True)
class LossSpec:
    """One loss: its canonical definition, its arguments and its reference formulas.

    ``reference`` computes one item's loss (an element, or a row) from exact
    values, and ``derivative`` that item's derivative with respect to input
    (reference.derivatives); the harness applies the reduction. ``regimes`` are
    the input regimes it is measured on; ``cancellation`` is what its
    cancellation regime moves (None: nothing, the regime draws typical inputs).
    """

    name: str
    family: str
    definition: str
    layout: Layout
    args: tuple[ArgSpec, ...]
    reference: Callable[..., Any]
    derivative: Callable[..., Any]
    params: tuple[ParamSpec, ...] = ()
    regimes: tuple[str, ...] = ALL_REGIMES
    default_reduction: str = "mean"
    cancellation: Cancellation | None = TOWARD_TARGET

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"bad loss name {self.name!r}")
        unknown_regimes = set(self.regimes) - set(ALL_REGIMES)
        if unknown_regimes or not self.regimes:
            raise ValueError(f"{self.name}: regimes must be a non-empty subset of {ALL_REGIMES}")
        names = [a.name for a in self.args]
        if names[:1] != ["input"] or ("target" in names and names[1] != "target"):
            raise ValueError(f"{self.name}: the first argument must be 'input', and 'target' (if any) the second")
        if self.default_reduction not in REDUCTIONS:
            raise ValueError(f"{self.name}: default reduction must be one of {REDUCTIONS}")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate argument names {names}")
        if self.layout is Layout.ELEMENTWISE and any(a.per_row for a in self.args):
            raise ValueError(f"{self.name}: element-wise losses have no per-row arguments")
        if len({p.name for p in self.params}) != len(self.params):
            raise ValueError(f"{self.name}: duplicate parameter names")
        moved = self.cancellation
        if "cancellation" in self.regimes and moved is not None and not {moved.moves, moved.near} <= set(names):
            raise ValueError(f"{self.name}: the cancellation regime moves {moved.moves!r} near {moved.near!r}, "
                             f"but its arguments are {names}")

    def arg(self, name: str) -> ArgSpec:
        for a in self.args:
            if a.name == name:
                return a
        raise KeyError(name)

    def resolve_params(self, given: dict[str, float]) -> dict[str, float]:
        """Defaults filled in and every value validated; unknown names rejected."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            expected = ", ".join(known) or "none"
            raise ValueError(f"{self.name} has no parameter {unknown[0]!r} (parameters: {expected})")
        return {name: p.validate(given.get(name, p.default)) for name, p in known.items()}


@dataclass(frozen=True)
class Case:
    """One evaluation request: which loss, computed how, in which precision."""

    loss: str
    framework: str
    impl: str
    dtype: str
    device: str = "cpu"
    reduction: str = "mean"
    params: tuple[tuple[str, float], ...] = field(default=())
    mode: str = "eager"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduction!r}; expected one of {', '.join(REDUCTIONS)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; expected one of {', '.join(DEVICES)}")


@dataclass(frozen=True)
class Result:
    """What one case produced beside its reference. A number is present only when
    it is honest: ``ulp_error`` is None for non-finite or unsettled items, and a
    framework that raised leaves ``values`` empty and says so in ``error``."""

    case: Case
    values: tuple[float, ...]
    result_dtype: str | None
    reference: tuple[Any, ...]  # reference.certify.RefValue per item
    reference_rounded: tuple[float, ...]
    ulp_errors: tuple[float | None, ...]
    rel_errors: tuple[float | None, ...]
    nonfinite: tuple[str | None, ...]
    error: str | None = None

    @property
    def max_ulp(self) -> float | None:
        finite = [u for u in self.ulp_errors if u is not None]
        return max(finite) if finite else None
