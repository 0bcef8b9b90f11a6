"""NumPy has no loss API, so every loss is written twice:

- ``naive``: the textbook formula as tutorials write it, reduced with np.mean/np.sum;
- ``stable``: the formulation a numerical analyst would use (log-sum-exp shift,
  log1p/softplus, no 0*log 0) with the reduction accumulated in a wider type.

Both compute element-wise in the requested dtype (bfloat16 through ml_dtypes),
and both return the requested dtype. Every constant and parameter is cast to the
array's dtype first: ml_dtypes promotes bfloat16 with a Python float to float32.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from harness.adapters.base import Adapter, Impl, Output, reduce
from harness.adapters.numpy_adapter.forward import FORMULAS, WIDER, Array, const
from harness.adapters.numpy_adapter.gradients import GRADIENTS
from harness.model.dtypes import NUMPY_DTYPES
from harness.model.spec import LossSpec


def _naive_reduce(items: Array, reduction: str, dtype: np.dtype) -> Array:
    return reduce(items, reduction, lambda x: np.asarray(np.mean(x)), lambda x: np.asarray(np.sum(x)))


def _wide_reduce(items: Array, reduction: str, dtype: np.dtype) -> Array:
    """Accumulate in the wider type; ``items`` may already be wider than ``dtype``."""
    if reduction != "none":
        total = np.sum(items, dtype=WIDER[dtype])
        items = np.asarray(total / items.size if reduction == "mean" else total)
    return items.astype(dtype)


def _impl(per_item: Callable[..., Array], reducer: Callable[[Array, str, np.dtype], Array]) -> Impl:
    """Arguments arrive in the spec's order; one value per element or row, then reduced."""
    def impl(a: dict[str, Array], reduction: str, params: dict[str, float]) -> Array:
        return reducer(per_item(*a.values(), **params), reduction, a["input"].dtype)
    impl.__wrapped__ = per_item  # type: ignore[attr-defined]  (what the atlas shows as the code)
    return impl


def _gradient(per_item: Callable[..., Array], wide: bool) -> Impl:
    """The item gradient times the reduction's 1/N: stable applies it in the wider
    type (N itself may not fit a half format), naive multiplies by 1/N in the dtype
    as np.mean's textbook derivative does."""
    def gradient(a: dict[str, Array], reduction: str, params: dict[str, float]) -> Array:
        g = per_item(*a.values(), **params)
        if reduction == "mean":
            count = a["input"].shape[0]
            g = (g.astype(WIDER[g.dtype]) / count).astype(g.dtype) if wide else g * const(g, 1.0 / count)
        return g
    return gradient


class NumpyAdapter(Adapter):
    name = "numpy"
    impls = {
        "naive": {name: _impl(naive, _naive_reduce) for name, (naive, _) in FORMULAS.items()},
        "stable": {name: _impl(stable, _wide_reduce) for name, (_, stable) in FORMULAS.items()},
    }
    gradient_method = "numpy analytic"

    def gradient(self, spec: LossSpec, impl: str) -> Impl | None:
        naive, stable = GRADIENTS[spec.name]
        per_item = stable if impl == "stable" else naive
        return None if per_item is None else _gradient(per_item, wide=impl == "stable")

    def stream_kernels(self, device: str, elements: int) -> dict[str, Callable[[], Any]]:
        a, b, c = (np.full(elements, v) for v in (1.0, 2.0, 0.5))
        # NumPy has no fused multiply-add ufunc: its triad is two passes (scale into a, then add).
        return {"copy": lambda: np.copyto(a, b), "scale": lambda: np.multiply(b, 3.0, out=a),
                "add": lambda: np.add(b, c, out=a),
                "triad": lambda: np.add(b, np.multiply(c, 3.0, out=a), out=a)}

    def version(self) -> str:
        return f"{np.__version__} (ml_dtypes {ml_dtypes.__version__})"

    def devices(self) -> list[str]:
        return ["cpu"]

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> Array:
        if dtype is None:
            return np.asarray(array, dtype=np.int64)
        return np.asarray(array).astype(NUMPY_DTYPES[dtype])

    def to_output(self, result: Array) -> Output:
        result = np.asarray(result)
        return Output(result.astype(np.float64).reshape(-1), _dtype_name(result.dtype))

    def context(self, device: str) -> Any:
        return np.errstate(all="ignore")  # overflow and 0 * log 0 are results here, not warnings


def _dtype_name(dtype: np.dtype) -> str:
    return "bfloat16" if dtype == np.dtype(ml_dtypes.bfloat16) else dtype.name


ADAPTER = NumpyAdapter()
