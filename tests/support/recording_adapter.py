"""A compiling framework that writes what it compiles and when its caches are
emptied to the file RECORDING_LOG names (the compile-time tests read the order)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from harness.adapters.base import Adapter, Impl, Output


def _note(line: str) -> None:
    with open(os.environ["RECORDING_LOG"], "a") as log:
        log.write(line + "\n")


def _mse(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    items = (a["input"] - a["target"]) ** 2
    return items if reduction == "none" else np.asarray(items.mean())


class RecordingAdapter(Adapter):
    name = "recording"
    impls = {"plain": {"mse": _mse}}
    modes = ("compiled",)

    def compile(self, function: Impl) -> Impl:
        _note(f"compile {function.__name__}")
        return function

    def reset_compiler(self) -> None:
        _note("reset")

    def version(self) -> str:
        return "0"

    def devices(self) -> list[str]:
        return ["cpu"]

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> np.ndarray:
        return np.asarray(array, dtype=np.float64)

    def to_output(self, result: np.ndarray) -> Output:
        return Output(np.asarray(result, dtype=np.float64).reshape(-1), "float64")


ADAPTER = RecordingAdapter()
