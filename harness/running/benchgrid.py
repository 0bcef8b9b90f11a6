"""The benchmark grid shared by the asv suite and the pytest-benchmark suite in
bench/: cases come from the registry and the adapters, never from a
hand-written list, and only cases that exist: an impl the framework has for the
loss, a dtype it can run (its known failures left out), on an available framework,
in every mode the framework has (eager and compiled for torch, TensorFlow and JAX;
an eager case's id carries no mode, so asv histories from before modes continue).

The whole grid (every loss x framework impl x dtype x size) is large, so by
default a seeded subset runs: a case belongs to it when a hash of the seed and
the case falls in one bucket of SUBSET_BUCKETS (stable per case, so adding a
loss never reshuffles the others and asv history stays comparable), plus the
anchor cases (mse and cross_entropy, torch native, float32). Set
LOSSBENCH_BENCH_FULL=1 for the whole grid. Inputs are the typical regime, seed
0, generated in the case's dtype exactly as the sweep generates them
(harness.running.benchrun prepares and measures a case).
"""
from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass

from harness import adapters
from harness.model import registry
from harness.model.spec import DTYPES

FULL_ENV = "LOSSBENCH_BENCH_FULL"
REFCACHE_ENV = "LOSSBENCH_REFCACHE"
SEED = 0
SUBSET_BUCKETS = 24
SIZES = (1_000, 100_000, 1_000_000)
# References beyond this size cost minutes per case: accuracy at 1e6 and up is the sweep's job.
TRACK_MAX_SIZE = 100_000
ANCHORS = {(loss, "torch:native", "float32", size) for loss in ("mse", "cross_entropy") for size in SIZES}
DEVICE = "cpu"


@dataclass(frozen=True)
class BenchCase:
    loss: str
    impl: str  # "framework:impl"
    dtype: str
    size: int
    mode: str = "eager"

    @property
    def framework(self) -> str:
        return self.impl.split(":", 1)[0]

    @property
    def impl_name(self) -> str:
        return self.impl.split(":", 1)[1]

    @property
    def id(self) -> str:
        return f"{self.loss}/{self.impl}/{self.dtype}/{self.size}" + ("" if self.mode == "eager" else f"/{self.mode}")

    @classmethod
    def from_id(cls, text: str) -> BenchCase:
        loss, impl, dtype, size, *mode = text.split("/")
        return cls(loss, impl, dtype, int(size), *mode)


def full_grid_requested() -> bool:
    return os.environ.get(FULL_ENV, "") not in ("", "0")


def losses() -> list[str]:
    return list(registry.names())


def impls() -> list[str]:
    """Every framework impl the adapter table declares (adapters added through
    LOSSBENCH_ADAPTERS declare none until loaded, so they are not in the grid)."""
    return [f"{fw.name}:{impl}" for fw in adapters.FRAMEWORKS.values() for impl in fw.impls or ()]


@functools.lru_cache(maxsize=None)
def _modes(loss: str, impl: str, dtype: str) -> tuple[str, ...]:
    """The modes the case runs in: none unless the framework is available, has this
    impl of the loss and does not declare the dtype a failure."""
    framework, name = impl.split(":", 1)
    try:
        adapter = adapters.load(framework)
    except adapters.FrameworkUnavailable:
        return ()
    if name not in adapter.impl_names(loss) or adapter.known_failure(loss, name, dtype, DEVICE):
        return ()
    return adapter.modes


def in_subset(case: BenchCase) -> bool:
    if (case.loss, case.impl, case.dtype, case.size) in ANCHORS and case.mode == "eager":
        return True
    return zlib.crc32(f"{SEED}:{case.id}".encode()) % SUBSET_BUCKETS == 0


def cases(full: bool | None = None) -> list[BenchCase]:
    """The grid's cases (the subset unless ``full``, which defaults to the environment)."""
    full = full_grid_requested() if full is None else full
    every = [BenchCase(loss, impl, dtype, size, mode) for loss in losses() for impl in impls() for dtype in DTYPES
             for mode in _modes(loss, impl, dtype) for size in SIZES]
    return [c for c in every if full or in_subset(c)]
