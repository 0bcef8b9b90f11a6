"""Bandwidth and bytes-moved arithmetic: STREAM byte counts, the device limit,
and the minimum traffic of a prepared loss call, counted here from the argument
shapes and dtypes."""
from __future__ import annotations

import numpy as np
import pytest

from harness import adapters
from harness.measure import bandwidth, regimes
from harness.model import registry
from harness.model.dtypes import NUMPY_DTYPES as DTYPES
from harness.model.spec import DTYPES as DTYPE_NAMES
from conftest import need


def itemsize(dtype: str) -> int:
    return np.dtype(DTYPES[dtype]).itemsize


def test_stream_byte_counts_and_rates() -> None:
    copy = bandwidth.StreamResult("numpy", "cpu", "copy", 1000, best_seconds=1e-6, median_seconds=2e-6)
    triad = bandwidth.StreamResult("numpy", "cpu", "triad", 1000, best_seconds=1e-6, median_seconds=2e-6)
    assert copy.bytes_moved == 2 * 8 * 1000 and triad.bytes_moved == 3 * 8 * 1000
    assert triad.gbps == pytest.approx(24_000 / 1e-6 / 1e9)  # 24 GB/s


def test_limit_is_the_best_rate_on_that_device() -> None:
    results = [bandwidth.StreamResult("numpy", "cpu", "copy", 10**6, 1e-3, 1e-3),  # 16 GB/s
               bandwidth.StreamResult("torch", "cpu", "triad", 10**6, 1e-3, 2e-3),  # 24 GB/s
               bandwidth.StreamResult("torch", "cuda", "copy", 10**6, 1e-5, 1e-5)]  # 1600 GB/s
    assert bandwidth.limit(results, "cpu") == pytest.approx(24.0)
    assert bandwidth.limit(results, "cuda") == pytest.approx(1600.0)
    assert bandwidth.limit(results, "mps") is None
    assert bandwidth.fraction(12.0, 24.0) == 0.5 and bandwidth.fraction(12.0, None) is None


def test_measure_runs_every_kernel_the_adapter_offers() -> None:
    results = bandwidth.measure(adapters.load("numpy"), "cpu", elements=10_000, runs=2)
    assert [r.kernel for r in results] == ["copy", "scale", "add", "triad"]
    assert all(0 < r.best_seconds <= r.median_seconds and r.elements == 10_000 for r in results)


@pytest.mark.parametrize("framework", list(adapters.FRAMEWORKS))
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_bytes_moved_by_a_loss_call(framework: str, dtype: str) -> None:
    need(framework)
    adapter = adapters.load(framework)
    for loss, size in (("mse", 1000), ("cross_entropy", 1000)):
        spec = registry.get(loss)
        impl = adapter.impl_names(loss)[-1]
        if adapter.known_failure(loss, impl, dtype, "cpu"):
            pytest.skip(f"{framework} cannot run {dtype}: {adapter.known_failure(loss, impl, dtype, 'cpu')}")
        arrays = regimes.typical(spec, dtype, size)
        forward = adapter.prepare(spec, impl, arrays, dtype, "cpu", "mean", {})
        backward = adapter.prepare(spec, impl, arrays, dtype, "cpu", "mean", {}, gradient=True) \
            if adapter.gradient(spec, impl) else None
        floats = size * itemsize(dtype)  # input; mse's target is as large again
        target = floats if loss == "mse" else (size // regimes.DEFAULT_WIDTH) * 8  # class indices are int64
        result = itemsize(adapter.run(spec, impl, arrays, dtype, "cpu", "mean", {}).result_dtype)  # Keras: float32
        assert forward.bytes_moved == floats + target + result
        if backward is not None:
            assert backward.bytes_moved == floats + target + floats  # the gradient is shaped like input
