"""JAX: optax.losses where optax has the loss (impl 'native'), composed from
jax.numpy and jax.nn where it has none (impl 'composed').

optax returns per-example values and leaves the reduction to the caller; the
adapter reduces them with jnp.mean and jnp.sum as a JAX user does. Where optax's
convention is not the canonical loss, the adapter maps it and the atlas records
the call: smooth_l1 is optax.huber_loss with delta = beta, divided by beta;
kl_div passes log(input), since optax takes log-predictions; cosine_similarity
negates optax.cosine_similarity. float64 needs jax_enable_x64, which this
module turns on for its process (settings() reports it): with it, Python
scalars stay weakly typed, so float16, bfloat16 and float32 inputs keep their
dtype. Calls are eager (op-by-op dispatch); results are read back with
block_until_ready before a clock is read. In a sweep's workers (COMPILE_CACHE_ENV
set) every kernel compiled goes to JAX's persistent cache in the sweep's folder,
so the timing worker loads what the other workers compiled for the same shapes.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402
from jax.scipy.special import xlogy  # noqa: E402

from harness.adapters.base import (  # noqa: E402
    COMPILE_CACHE_ENV, INACCURATE, Adapter, Impl, Known, Output, api_call, reduce,
)
from harness.model.spec import LossSpec  # noqa: E402

if os.environ.get(COMPILE_CACHE_ENV):  # every kernel, however small: eager JAX compiles one per op and shape
    jax.config.update("jax_compilation_cache_dir", os.environ[COMPILE_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

_DTYPES = {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64}

_reduce = functools.partial(reduce, mean=jnp.mean, total=jnp.sum)


def _optax(api: Callable[..., Any], names: tuple[str, ...] = ("input", "target"), params: tuple[str, ...] = (),
           rename: dict[str, str] | None = None) -> Impl:
    """optax ``api`` on the named arguments (per example), with the loss parameters
    passed as keywords (``rename``: lossbench's name -> optax's), then reduced."""
    def impl(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
        options = {(rename or {}).get(name, name): p[name] for name in params}
        return _reduce(api_call(api, *(a[n] for n in names), **options), reduction)
    return impl


def _smooth_l1(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
    # smooth_l1 with beta is huber with delta = beta, divided by beta.
    beta = p["beta"]
    return _reduce(api_call(optax.losses.huber_loss, a["input"], a["target"], delta=beta) / beta, reduction)


def _kl_div(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
    # optax takes log-predictions: the input row q enters as log q.
    return _reduce(api_call(optax.losses.kl_divergence, jnp.log(a["input"]), a["target"]), reduction)


def _cosine_similarity(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
    return _reduce(-api_call(optax.losses.cosine_similarity, a["input"], a["target"]), reduction)


def _hinge_margin(a: dict[str, Any]) -> jax.Array:
    return jnp.maximum(1.0 - a["target"] * a["input"], 0.0)


def _rows_norm(x: jax.Array) -> jax.Array:
    return jnp.linalg.norm(x, axis=1)


def _contrastive(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
    d = _rows_norm(a["input"] - a["input2"])
    label = a["target"]
    gap = jnp.maximum(p["margin"] - d, 0.0)
    return _reduce((label * d * d + (1.0 - label) * gap * gap) / 2.0, reduction)


def _multi_margin(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
    s, t = a["input"], a["target"]
    positive = jnp.take_along_axis(s, t[:, None], axis=1)
    margins = jnp.maximum(p["margin"] - positive + s, 0.0)
    margins = jnp.where(jax.nn.one_hot(t, s.shape[1], dtype=jnp.bool_), 0.0, margins)
    return _reduce(jnp.sum(margins, axis=1) / s.shape[1], reduction)


def _nll(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
    return _reduce(-jnp.take_along_axis(a["input"], a["target"][:, None], axis=1)[:, 0], reduction)


NATIVE: dict[str, Impl] = {
    "mse": _optax(optax.losses.squared_error),
    "huber": _optax(optax.losses.huber_loss, params=("delta",)),
    "smooth_l1": _smooth_l1,
    "log_cosh": _optax(optax.losses.log_cosh),
    "bce_logits": _optax(optax.losses.sigmoid_binary_cross_entropy),
    "focal": _optax(optax.losses.sigmoid_focal_loss, params=("gamma",)),
    "hinge": _optax(optax.losses.hinge_loss),
    "cross_entropy": _optax(optax.losses.softmax_cross_entropy_with_integer_labels),
    "soft_cross_entropy": _optax(optax.losses.softmax_cross_entropy),
    "kl_div": _kl_div,
    "categorical_hinge": _optax(optax.losses.multiclass_hinge_loss),
    "cosine_similarity": _cosine_similarity,
    "triplet_margin": _optax(optax.losses.triplet_margin_loss, ("input", "positive", "negative"),
                             params=("margin",)),
}

COMPOSED: dict[str, Impl] = {
    "mae": lambda a, r, p: _reduce(jnp.abs(a["input"] - a["target"]), r),
    "msle": lambda a, r, p: _reduce((jnp.log1p(a["input"]) - jnp.log1p(a["target"])) ** 2, r),
    "poisson_nll": lambda a, r, p: _reduce(a["input"] - xlogy(a["target"], a["input"]), r),
    "gaussian_nll": lambda a, r, p: _reduce(
        0.5 * (jnp.log(a["var"]) + (a["input"] - a["target"]) ** 2 / a["var"]), r),
    "bce": lambda a, r, p: _reduce(-(xlogy(a["target"], a["input"]) + xlogy(1.0 - a["target"], 1.0 - a["input"])), r),
    "soft_margin": lambda a, r, p: _reduce(jax.nn.softplus(-a["target"] * a["input"]), r),
    "squared_hinge": lambda a, r, p: _reduce(_hinge_margin(a) ** 2, r),
    "margin_ranking": lambda a, r, p: _reduce(
        jnp.maximum(-a["target"] * (a["input"] - a["input2"]) + p["margin"], 0.0), r),
    "categorical_ce": lambda a, r, p: _reduce(-jnp.sum(xlogy(a["target"], a["input"]), axis=1), r),
    "nll": _nll,
    "multi_margin": _multi_margin,
    "contrastive": _contrastive,
    "l2_penalty": lambda a, r, p: _reduce(a["input"] ** 2, r),
    "l1_penalty": lambda a, r, p: _reduce(jnp.abs(a["input"]), r),
}


def _grad(function: Impl) -> Impl:
    def gradient(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
        return jax.grad(lambda x: function({**a, "input": x}, reduction, p))(a["input"])
    return gradient


# Cells the framework computes far less accurately than the dtype allows, and why
# (the cell tests check each still shows).
KNOWN = (
    Known(INACCURATE, "triplet_margin", "optax.losses.triplet_margin_loss adds eps=1e-6 to every squared distance "
                                        "before the root", "native"),
    Known(INACCURATE, "msle", "log1p(x) - log1p(y) cancels when x is close to y", "composed"),
    Known(INACCURATE, "log_cosh", "optax.losses.log_cosh computes logaddexp(d, -d) - log(2), which cancels "
                                  "for small |d|", "native"),
)


class JaxAdapter(Adapter):
    name = "jax"
    impls = {"native": NATIVE, "composed": COMPOSED}
    gradient_method = "jax.grad"
    known = KNOWN
    modes = ("eager", "compiled")

    def compile(self, function: Impl) -> Impl:
        """jax.jit of the loss with its reduction and parameters fixed (static), one
        jitted function per reduction and parameters."""
        jitted: dict[tuple[str, tuple[tuple[str, float], ...]], Callable[[dict[str, Any]], jax.Array]] = {}

        def call(a: dict[str, Any], reduction: str, p: dict[str, float]) -> jax.Array:
            key = (reduction, tuple(sorted(p.items())))
            if key not in jitted:
                jitted[key] = jax.jit(lambda args: function(args, reduction, p))
            return jitted[key](a)
        return call

    @contextmanager
    def cold_compiler(self) -> Iterator[None]:
        """In-memory caches emptied, and the sweep's shared cache (COMPILE_CACHE_ENV)
        neither read nor written in the block."""
        enabled = jax.config.jax_enable_compilation_cache
        jax.config.update("jax_enable_compilation_cache", False)
        compilation_cache.reset_cache()
        jax.clear_caches()
        try:
            yield
        finally:
            jax.config.update("jax_enable_compilation_cache", enabled)
            compilation_cache.reset_cache()  # it remembers that the block used none

    def version(self) -> str:
        return f"{jax.__version__} (optax {optax.__version__})"

    def devices(self) -> list[str]:
        try:
            return ["cpu", "cuda"] if jax.devices("gpu") else ["cpu"]
        except RuntimeError:  # no GPU backend in this jaxlib
            return ["cpu"]

    def settings(self) -> dict[str, Any]:
        return {"jax_enable_x64": bool(jax.config.read("jax_enable_x64"))}

    def device_name(self, device: str) -> str | None:
        return jax.devices("gpu")[0].device_kind if device == "cuda" else None

    def _device(self, device: str) -> Any:
        return jax.devices("gpu" if device == "cuda" else "cpu")[0]

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> jax.Array:
        if dtype is None:
            return jax.device_put(np.asarray(array, dtype=np.int64), self._device(device))
        # Values are already representable in dtype, so the float64 detour is exact.
        return jax.device_put(np.asarray(array, dtype=np.float64), self._device(device)).astype(_DTYPES[dtype])

    def to_output(self, result: jax.Array) -> Output:
        values = np.asarray(jax.device_get(result))
        return Output(values.astype(np.float64).reshape(-1), str(result.dtype))

    def gradient(self, spec: LossSpec, impl: str) -> Impl:
        return _grad(self.impls[impl][spec.name])

    def nbytes(self, tensor: jax.Array) -> int:
        return int(tensor.size) * tensor.dtype.itemsize

    def synchronize(self, result: Any, device: str) -> None:
        if result is not None:
            result.block_until_ready()

    def stream_kernels(self, device: str, elements: int) -> dict[str, Callable[[], Any]]:
        # JAX arrays are immutable: every kernel allocates its output, as TensorFlow's do.
        place = self._device(device)
        b = jax.device_put(jnp.full((elements,), 2.0, dtype=jnp.float64), place)
        c = jax.device_put(jnp.full((elements,), 0.5, dtype=jnp.float64), place)
        return {"scale": lambda: b * 3.0, "add": lambda: b + c, "triad": lambda: b + 3.0 * c}

    def context(self, device: str) -> Any:
        return jax.default_device(self._device(device))


ADAPTER = JaxAdapter()
