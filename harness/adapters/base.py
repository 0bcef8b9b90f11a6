"""What every framework adapter provides; the per-framework files fill it in."""
from __future__ import annotations

import inspect
import numbers
import platform
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.spec import LossSpec


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class ApiCall:
    """One call of a framework's loss API: what was called, the options the adapter
    passed, and the numeric or boolean defaults it left alone (read from the API's
    signature: these are the framework's own choices, such as an eps)."""

    api: str
    passed: tuple[tuple[str, Any], ...]
    defaults: tuple[tuple[str, Any], ...]


_CALLS: ContextVar[list[ApiCall] | None] = ContextVar("api_calls", default=None)


def api_call(api: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Call ``api`` (a loss function, or a loss class to instantiate) and, inside
    ``recording()``, note the call for the conventions atlas."""
    calls = _CALLS.get()
    if calls is not None:
        calls.append(_describe(api, args, options))
    return api(*args, **options)


def _describe(api: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any]) -> ApiCall:
    name = f"{api.__module__}.{api.__qualname__}"
    try:
        signature = inspect.signature(api)
        bound = set(signature.bind_partial(*args, **options).arguments)
    except (TypeError, ValueError):
        return ApiCall(name, tuple(sorted(options.items())), ())
    defaults = tuple(
        (p.name, p.default) for p in signature.parameters.values()
        if p.name not in bound and isinstance(p.default, numbers.Number)
    )
    return ApiCall(name, tuple(sorted(options.items())), defaults)


@contextmanager
def recording() -> Iterator[list[ApiCall]]:
    """Collect the api_call()s made inside the block."""
    calls: list[ApiCall] = []
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


# impl(args by canonical name, reduction, params) -> framework tensor
Impl = Callable[[dict[str, Any], str, dict[str, float]], Any]


@dataclass(frozen=True)
class Output:
    """A framework's result read back exactly (every format widens exactly to
    float64), with the dtype the framework really returned."""

    values: np.ndarray
    result_dtype: str


class Adapter(ABC):
    """One framework. ``impls`` maps impl name -> loss name -> implementation;
    ``known_failure`` says which cells the framework itself cannot run, and why."""

    name: str
    impls: Mapping[str, Mapping[str, Impl]]
    # (loss, impl, dtype, or None for every dtype) -> why that cell is far less
    # accurate than its dtype allows; the cell tests check each still shows.
    inaccurate: Mapping[tuple[str, str, str | None], str] = {}

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def devices(self) -> list[str]: ...

    @abstractmethod
    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> Any:
        """``dtype`` None means an integer (class index) array."""

    @abstractmethod
    def to_output(self, result: Any) -> Output: ...

    def known_failure(self, loss: str, impl: str, dtype: str, device: str) -> str | None:
        """Why the framework itself cannot run this cell, if it cannot."""
        return None

    def known_inaccuracy(self, loss: str, impl: str, dtype: str) -> str | None:
        """Why this cell is far less accurate than its dtype allows, if it is."""
        return self.inaccurate.get((loss, impl, dtype)) or self.inaccurate.get((loss, impl, None))

    def settings(self) -> dict[str, Any]:
        """Framework-wide settings that change loss values, read from the framework."""
        return {}

    def device_name(self, device: str) -> str:
        """What the device is, for the run's environment record."""
        return cpu_model()

    def context(self, device: str) -> AbstractContextManager[Any]:
        """Where and how the call runs (device placement, autograd off)."""
        return nullcontext()

    def impl_names(self, loss: str) -> list[str]:
        return [impl for impl, table in self.impls.items() if loss in table]

    def run(
        self, spec: LossSpec, impl: str, arrays: Mapping[str, np.ndarray],
        dtype: str, device: str, reduction: str, params: dict[str, float],
    ) -> Output:
        with self.context(device):
            native = {
                a.name: self.to_native(arrays[a.name], dtype if a.domain.is_float else None, device)
                for a in spec.args
            }
            return self.to_output(self.impls[impl][spec.name](native, reduction, params))
