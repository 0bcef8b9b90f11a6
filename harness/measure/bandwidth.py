"""The physical limit: this machine's achievable memory bandwidth, measured the
way STREAM does, and the effective bandwidth of a timed loss call against it.

Loss kernels are memory-bound: a reduction reads each argument once and does a
few flops per element. So the honest yardstick for "how fast could this be" is
how fast the device streams memory, not its flop rate.

STREAM conventions: float64 arrays far larger than the last-level cache; bytes
counted are the minimum the kernel must move (copy and scale: read one array,
write one; add and triad: read two, write one), write-allocate traffic not
counted; the best of several runs is the rate. Each framework runs the kernels
with its own ops on its own device, since what a framework can reach is what its
losses can reach; the limit of a device is the best rate any of them reached.

Effective bandwidth of a loss call = its minimum bytes moved (arguments read
once, result written once) / median seconds per call. Small inputs live in
cache, where the rate can exceed the memory limit: a fraction above 1 says so.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.measure import timing
from harness.adapters.base import Adapter

ARRAYS_MOVED = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
FLOAT64_BYTES = 8
# 2**24 float64 = 128 MiB per array: four times a 32 MiB last-level cache.
DEFAULT_ELEMENTS = 2**24
DEFAULT_RUNS = 5


@dataclass(frozen=True)
class StreamResult:
    framework: str
    device: str
    kernel: str
    elements: int
    best_seconds: float
    median_seconds: float

    @property
    def bytes_moved(self) -> int:
        return ARRAYS_MOVED[self.kernel] * FLOAT64_BYTES * self.elements

    @property
    def gbps(self) -> float:
        return gbps(self.bytes_moved, self.best_seconds)


def gbps(bytes_moved: int, seconds: float) -> float:
    """Decimal gigabytes per second, as STREAM reports (1 GB = 1e9 bytes)."""
    return bytes_moved / seconds / 1e9


def fraction(rate_gbps: float, limit_gbps: float | None) -> float | None:
    return rate_gbps / limit_gbps if limit_gbps else None


def measure(adapter: Adapter, device: str, elements: int = DEFAULT_ELEMENTS,
            runs: int = DEFAULT_RUNS) -> list[StreamResult]:
    """Every STREAM kernel the adapter offers, one call per sample, best of ``runs``."""
    results = []
    with adapter.context(device):
        for kernel, call in adapter.stream_kernels(device, elements).items():
            timed = timing.measure(call, lambda r: adapter.synchronize(r, device), samples=runs, min_sample_time=0.0,
                                   warmup=1)
            results.append(StreamResult(adapter.name, device, kernel, elements, timed.best, timed.median))
    return results


def limit(results: Iterable[StreamResult], device: str) -> float | None:
    """The device's limit: the best rate any framework's kernel reached on it."""
    rates = [r.gbps for r in results if r.device == device]
    return max(rates) if rates else None
