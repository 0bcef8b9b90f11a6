"""The loss registry: every loss file registers its specs here, and everything
else (CLI, tests, sweeps) iterates the registry instead of naming losses."""
from __future__ import annotations

from collections.abc import Iterator

from typing import Any

from harness.model.spec import Layout, LossSpec
from reference import derivatives, formulas

_LOSSES: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    if spec.name in _LOSSES:
        raise ValueError(f"loss {spec.name!r} registered twice")
    _LOSSES[spec.name] = spec
    return spec


def define(name: str, family: str, definition: str, layout: Layout, args: tuple[Any, ...], **facts: Any) -> LossSpec:
    """Register a loss whose mp formula and derivative are the functions of its name in
    reference/formulas.py and reference/derivatives.py (the one place each is written)."""
    return register(LossSpec(name, family, definition, layout, args, getattr(formulas, name),
                             getattr(derivatives, name), **facts))


def _ensure_loaded() -> None:
    import harness.model.losses  # noqa: F401  (importing registers every family)


def get(name: str) -> LossSpec:
    _ensure_loaded()
    try:
        return _LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; run 'lossbench list losses'") from None


def names() -> list[str]:
    _ensure_loaded()
    return sorted(_LOSSES)


def iter_losses() -> Iterator[LossSpec]:
    for name in names():
        yield _LOSSES[name]
