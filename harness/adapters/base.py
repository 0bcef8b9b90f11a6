"""What every framework adapter provides; the per-framework files fill it in."""
from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.spec import Domain, LossSpec

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    ``known_failures`` lists cells the framework itself cannot run, with why."""

    name: str
    impls: Mapping[str, Mapping[str, Impl]]

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
        """Why this native cell is far less accurate than its dtype allows, if it is."""
        return None

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
