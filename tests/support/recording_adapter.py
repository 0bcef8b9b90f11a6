"""A compiling framework that writes what it compiles and when its caches are
emptied to the file RECORDING_LOG names (the compile-time tests read the order);
otherwise the faulty adapter's plain NumPy."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from harness.adapters.base import Impl
from tests.support.faulty_adapter import FaultyAdapter, _ok


def _note(line: str) -> None:
    with open(os.environ["RECORDING_LOG"], "a") as log:
        log.write(line + "\n")


class RecordingAdapter(FaultyAdapter):
    name = "recording"
    impls = {"plain": {"mse": _ok}}
    modes = ("compiled",)

    def compile(self, function: Impl) -> Impl:
        _note(f"compile {function.__name__}")
        return function

    @contextmanager
    def cold_compiler(self) -> Iterator[None]:
        _note("cold")
        yield
        _note("warm again")


ADAPTER = RecordingAdapter()
