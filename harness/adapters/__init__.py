"""Framework adapters, imported lazily: a framework that is missing (or disabled
with LOSSBENCH_DISABLE=name,name) is listed as unavailable, never a crash.
LOSSBENCH_ADAPTERS=name=module,... adds adapters kept outside this package (the
module defines ADAPTER); child processes inherit it like everything else here.
An entry naming a built-in framework replaces it; a malformed entry, a module
that does not import or defines no ADAPTER is listed unavailable, with why."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass

from harness.adapters.base import Adapter


@dataclass(frozen=True)
class Framework:
    """Where an adapter lives, known without importing the framework. ``impls`` is
    None for adapters added through LOSSBENCH_ADAPTERS (known once loaded)."""

    name: str
    module: str
    distributions: tuple[str, ...]  # pip names, first installed one gives the version
    impls: tuple[str, ...] | None


FRAMEWORKS: dict[str, Framework] = {
    "numpy": Framework("numpy", "harness.adapters.numpy_adapter", ("numpy",), ("naive", "stable")),
    "torch": Framework("torch", "harness.adapters.torch_adapter", ("torch",), ("native", "composed")),
    "tensorflow": Framework("tensorflow", "harness.adapters.tensorflow_adapter", ("tensorflow", "tensorflow-cpu"),
                            ("native", "composed")),
    "jax": Framework("jax", "harness.adapters.jax_adapter", ("jax",), ("native", "composed")),
    "pytensor": Framework("pytensor", "harness.adapters.pytensor_adapter", ("pytensor",), ("composed", "unstabilized")),
}


for _entry in filter(None, (e.strip() for e in os.environ.get("LOSSBENCH_ADAPTERS", "").split(","))):
    _name, _, _module = (part.strip() for part in _entry.partition("="))
    FRAMEWORKS[_name or _entry] = Framework(_name or _entry, _module, (), None)


class FrameworkUnavailable(RuntimeError):
    pass


_loaded: dict[str, Adapter] = {}
_failed: dict[str, str] = {}


def disabled() -> set[str]:
    """Frameworks named in LOSSBENCH_DISABLE."""
    return {n.strip() for n in os.environ.get("LOSSBENCH_DISABLE", "").split(",") if n.strip()}


def load(name: str) -> Adapter:
    """The adapter for ``name``; raises FrameworkUnavailable with the reason."""
    if name not in FRAMEWORKS:
        raise KeyError(f"unknown framework {name!r}; expected one of {', '.join(FRAMEWORKS)}")
    if name in disabled():
        raise FrameworkUnavailable(f"framework {name} is disabled by LOSSBENCH_DISABLE")
    if name in _failed:
        raise FrameworkUnavailable(_failed[name])
    if name not in _loaded:
        module = FRAMEWORKS[name].module
        try:
            if not module:
                raise ImportError(f"the LOSSBENCH_ADAPTERS entry for {name!r} names no module (name=module)")
            adapter = getattr(importlib.import_module(module), "ADAPTER", None)
            if not isinstance(adapter, Adapter):
                raise ImportError(f"module {module} defines no ADAPTER")
        except Exception as exc:  # noqa: BLE001  whatever a foreign module does on import, it is unavailable
            _failed[name] = f"framework {name} is not available here ({type(exc).__name__}: {exc})"
            raise FrameworkUnavailable(_failed[name]) from None
        _loaded[name] = adapter
    return _loaded[name]


def installed_version(name: str) -> str | None:
    """Version from package metadata, without importing the framework."""
    for dist in FRAMEWORKS[name].distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
