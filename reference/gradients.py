"""The reference gradient: d(reduced loss)/d(input), settled like the loss itself.

The reduction is part of the derivative: under 'sum' an input element's gradient
is its item's derivative; under 'mean' that divided by the item count N (the
elements of an element-wise loss, the rows of a row-wise one). Inputs of several
sizes share their items (they are prefixes of one stream), so one evaluation of
an item's derivative serves every size that holds it: the formula settled here
returns the derivative divided by each of the item's scales, and settlement
covers all of them together (a division by N rounds unless N is a power of two).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import mpmath

from reference import certify
from reference.arith import Arithmetic, Enclosure, Shifted, bounds, quotient
from reference.certify import RefValue
from reference.derivatives import Component, Derivative
from reference.mpexact import rational, to_fraction


def _scale(c: Arithmetic, value: Component, count: int) -> Component:
    if value is None or count == 1:
        return value
    kind = type(value)
    if kind is Shifted and c.is_point(value.tail):  # exact after all (sigmoid(0) - 1/2): divide it exactly
        tail = mpmath.mp.make_mpf(c.endpoints(value.tail)[0])
        value = rational(to_fraction(value.head) + to_fraction(tail))
        kind = type(value)
    elif kind not in (mpmath.mpf, Fraction, Shifted, Enclosure) and c.is_point(value):
        value = mpmath.mp.make_mpf(bounds(c, value)[0])
        kind = mpmath.mpf
    if kind is mpmath.mpf:
        return quotient(value, mpmath.mpf(count)) if mpmath.isfinite(value) and value else value
    if kind is Fraction:
        return value / count
    if kind is Shifted:
        return value.scaled(count)  # the exact head stays exact
    if kind is Enclosure:
        lower, upper = certify.reduce(value.lower._mpf_, value.upper._mpf_, count, "mean", mpmath.mp.prec)
        return Enclosure(mpmath.mp.make_mpf(lower), mpmath.mp.make_mpf(upper))
    return value / count


def scaled(derivative: Derivative) -> Callable[..., tuple[Component, ...]]:
    """A formula over (item..., scales): the item's derivative divided by each scale,
    scale-major."""
    def formula(c: Arithmetic, *item_and_scales: Any) -> tuple[Component, ...]:
        *item, scales = item_and_scales
        components = derivative(c, *item)
        return tuple(_scale(c, v, s) for s in scales for v in components)
    return formula


def scales(reduction: str, counts: Sequence[int]) -> tuple[int, ...]:
    """What an item's derivative is divided by for inputs of these item counts."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"a gradient is taken of the reduced loss: reduction must be mean or sum, got {reduction!r}")
    return tuple(counts) if reduction == "mean" else (1,)


def settle(derivative: Derivative, items: Sequence[tuple[Any, ...]], item_scales: Sequence[tuple[int, ...]],
           c: Arithmetic) -> list[list[list[RefValue]]]:
    """For each item and each of its scales, the settled gradient components
    (result[item][scale][component]); a component's value is None where the loss
    has no derivative."""
    settled = certify.settle_items(scaled(derivative), [(*item, s) for item, s in zip(items, item_scales)], c)
    result = []
    for components, s in zip(settled, item_scales):
        width = len(components) // len(s)
        result.append([list(components[k * width:(k + 1) * width]) for k in range(len(s))])
    return result


def evaluate(derivative: Derivative, items: Sequence[tuple[Any, ...]], reduction: str,
             c: Arithmetic) -> list[RefValue]:
    """d(reduction of every item)/d(input), one value per input element, in order."""
    if not items:
        raise ValueError("the reference needs at least one item")
    (count,) = scales(reduction, (len(items),))
    per_item = settle(derivative, items, [(count,)] * len(items), c)
    return [value for item in per_item for value in item[0]]
