"""The reference gradient: d(reduced loss)/d(input), settled like the loss itself.

The reduction is part of the derivative: under 'sum' an input element's gradient
is its item's derivative; under 'mean' that divided by the item count N (the
elements of an element-wise loss, the rows of a row-wise one). Inputs of several
sizes share their items (they are prefixes of one stream), so one evaluation of
an item's derivative serves every size that holds it: the formula settled here
returns the derivative divided by each of the item's scales, and escalation
settles all of them together (a division by N rounds; by 1 it keeps the exact
value).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reference import escalation
from reference.derivatives import Component, Derivative
from reference.escalation import RefValue
from reference.formats import BinaryFormat
from reference.mpexact import is_exact


def _scale(value: Component, count: int) -> Component:
    if value is None or count == 1:
        return value
    return value / count


def scaled(derivative: Derivative, reduction: str) -> Callable[..., tuple[Component, ...]]:
    """A formula over (item..., scales): the item's derivative divided by each scale,
    scale-major. Exact when the derivative is and no scale divides (reduction sum)."""
    def formula(*item_and_scales: Any) -> tuple[Component, ...]:
        *item, scales = item_and_scales
        components = derivative(*item)
        return tuple(_scale(v, s) for s in scales for v in components)
    formula.exact_when = lambda **_: reduction == "sum" and is_exact(derivative)  # type: ignore[attr-defined]
    return formula


def scales(reduction: str, counts: Sequence[int]) -> tuple[int, ...]:
    """What an item's derivative is divided by for inputs of these item counts."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"a gradient is taken of the reduced loss: reduction must be mean or sum, got {reduction!r}")
    return tuple(counts) if reduction == "mean" else (1,)


def settle(derivative: Derivative, items: Sequence[tuple[Any, ...]], item_scales: Sequence[tuple[int, ...]],
           reduction: str, fmt: BinaryFormat) -> list[list[list[RefValue]]]:
    """For each item and each of its scales, the settled gradient components
    (result[item][scale][component]); a component's value is None where the loss
    has no derivative."""
    settled = escalation.settle_items(scaled(derivative, reduction),
                                      [(*item, s) for item, s in zip(items, item_scales)], fmt)
    result = []
    for ref, s in zip(settled.refs, item_scales):
        width = len(ref.value) // len(s)
        result.append([[RefValue(v, ref.settled, ref.precision) for v in ref.value[k * width:(k + 1) * width]]
                       for k in range(len(s))])
    return result


def evaluate(derivative: Derivative, items: Sequence[tuple[Any, ...]], reduction: str,
             fmt: BinaryFormat) -> list[RefValue]:
    """d(reduction of every item)/d(input), one value per input element, in order."""
    if not items:
        raise ValueError("the reference needs at least one item")
    (count,) = scales(reduction, (len(items),))
    per_item = settle(derivative, items, [(count,)] * len(items), reduction, fmt)
    return [value for item in per_item for value in item[0]]
