"""A framework that misbehaves on purpose, loaded through LOSSBENCH_ADAPTERS by
the sweep tests: each impl fails in one way a real framework can."""
from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.adapters.base import Adapter, Output


def _ok(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    items = (a["input"] - a["target"]) ** 2
    return items if reduction == "none" else np.asarray(items.mean())


def _slow(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    time.sleep(0.02)
    return _ok(a, reduction, params)


def _raises(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    raise RuntimeError("deliberate failure inside the framework")


def _crashes(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    ctypes.string_at(0)  # reads address 0: a real SIGSEGV, as a framework's own bug gives
    raise AssertionError("unreachable")


def _waits(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    """With FAULTY_WAIT_DIR set: writes this worker's pid there and waits to be
    killed from outside (the OOM killer, kill -9). Without it: computes like ok."""
    folder = os.environ.get("FAULTY_WAIT_DIR")
    if folder:
        Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()))
        time.sleep(3600)
    return _ok(a, reduction, params)


def _hangs(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    time.sleep(3600)
    raise AssertionError("unreachable")


_met: list[bool] = []


def _meets(a: dict[str, Any], reduction: str, params: dict[str, float]) -> np.ndarray:
    """With FAULTY_MEET_DIR set: the first cell of a worker waits (up to a minute)
    until two workers have reached one, so that two sweeps surely run at once.
    Computes like ok."""
    folder = os.environ.get("FAULTY_MEET_DIR")
    if folder and not _met:
        _met.append(True)
        Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while len(list(Path(folder).glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    return _ok(a, reduction, params)


class FaultyAdapter(Adapter):
    name = "faulty"
    impls = {"ok": {"mse": _ok}, "slow": {"mse": _slow}, "raises": {"mse": _raises}, "crashes": {"mse": _crashes},
             "hangs": {"mse": _hangs}, "waits": {"mse": _waits}, "meets": {"mse": _meets}}

    def version(self) -> str:
        return "0"

    def devices(self) -> list[str]:
        return ["cpu"]

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> np.ndarray:
        return np.asarray(array, dtype=np.float64)

    def to_output(self, result: np.ndarray) -> Output:
        return Output(np.asarray(result, dtype=np.float64).reshape(-1), "float64")


ADAPTER = FaultyAdapter()
