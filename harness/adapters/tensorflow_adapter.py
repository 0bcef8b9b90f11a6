"""TensorFlow: Keras 3 loss classes where they exist (impl 'native'), composed
from tf ops otherwise (impl 'composed').

Keras computes a loss in the loss object's dtype, floatx (float32) unless told,
casting its inputs to it. A float64 Keras user has to ask for float64, so the
adapter does (dtype='float64'); float16 and bfloat16 inputs keep Keras's default
upcast to float32, which is what mixed-precision training gets, and the result
dtype reports it. Element-wise losses are given shape [N, 1]: Keras averages over
the last axis before reducing, so this makes 'sum' and 'none' per element.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its C++ log lines, errors included: failures raise

import numpy as np  # noqa: E402

from harness.adapters.base import captured_stderr  # noqa: E402

# TensorFlow's C++ start-up notices (oneDNN is on, absl's logging preamble) go to
# file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says: taken here, so a sweep
# prints only its own lines, and read for the setting they announce.
with captured_stderr() as _start_up:
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402
ONEDNN_ON = "oneDNN custom operations are on" in _start_up.text

from harness.adapters.base import INACCURATE, Adapter, Impl, Known, Output, note_call, reduce  # noqa: E402
from harness.model.spec import LossSpec  # noqa: E402

# Compile times are measured on fresh tf.function objects on purpose, which TensorFlow
# warns about as excessive retracing: only errors are logged.
tf.get_logger().setLevel("ERROR")

_DTYPES = {"float16": tf.float16, "bfloat16": tf.bfloat16, "float32": tf.float32, "float64": tf.float64}
_KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}


_reduce = functools.partial(reduce, mean=tf.reduce_mean, total=tf.reduce_sum)


def _instance(api: type, **options: Any) -> Any:
    """A Keras loss or regularizer object, built once per set of options as a user
    builds it once before training (building it is not part of the loss's cost)."""
    note_call(api, **options)
    return _built(api, tuple(sorted(options.items())))


@functools.lru_cache(maxsize=None)
def _built(api: type, options: tuple[tuple[str, Any], ...]) -> Any:
    # Built eagerly even when first asked for inside a tf.function trace (compiled mode):
    # an object built in one trace holds that graph's constants, unusable in the next.
    with tf.init_scope():
        return api(**dict(options))


def _keras(loss_class: type, elementwise: bool, target_fn: Any = None, **options: Any) -> Impl:
    """A Keras loss called as users call it: loss(y_true, y_pred)."""

    def impl(a: dict[str, Any], reduction: str, params: dict[str, float]) -> tf.Tensor:
        prediction, target = a["input"], a["target"]
        if target_fn is not None:
            target = target_fn(prediction, target)
        if elementwise:
            prediction, target = tf.reshape(prediction, (-1, 1)), tf.reshape(target, (-1, 1))
        dtype = "float64" if prediction.dtype == tf.float64 else None
        keyword = {name: params[name] for name in options.get("params", ())}
        flags = {k: v for k, v in options.items() if k != "params"}
        loss = _instance(loss_class, reduction=_KERAS_REDUCTION[reduction], dtype=dtype, **keyword, **flags)
        return loss(target, prediction)

    return impl


def _regularizer(regularizer_class: type, factor: str) -> Impl:
    """A Keras weight regularizer, which returns factor * sum(...), with factor 1.
    Its one reduction is the sum: 'none' applies it to each element (vectorized_map),
    'mean' divides the sum by the element count."""

    def impl(a: dict[str, Any], reduction: str, params: dict[str, float]) -> tf.Tensor:
        penalty = _instance(regularizer_class, **{factor: 1.0})
        weights = a["input"]
        if reduction == "none":
            return tf.vectorized_map(penalty, weights)
        total = penalty(weights)
        return total / tf.cast(tf.size(weights), total.dtype) if reduction == "mean" else total

    return impl


def _one_hot(scores: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    return tf.one_hot(classes, scores.shape[1], dtype=scores.dtype)


def _smooth_l1(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
    d = tf.abs(a["input"] - a["target"])
    beta = p["beta"]
    return _reduce(tf.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def _nll(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
    return _reduce(-tf.gather(a["input"], a["target"], batch_dims=1), reduction)


def _multi_margin(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
    s, t = a["input"], a["target"]
    positive = tf.gather(s, t, batch_dims=1)[:, None]
    margins = tf.nn.relu(p["margin"] - positive + s)
    margins = tf.where(tf.cast(_one_hot(s, t), tf.bool), tf.zeros_like(margins), margins)
    return _reduce(tf.reduce_sum(margins, axis=1) / s.shape[1], reduction)


def _gaussian_nll(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
    var = a["var"]
    return _reduce(0.5 * (tf.math.log(var) + tf.square(a["input"] - a["target"]) / var), reduction)


def _triplet_margin(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
    anchor = a["input"]
    gap = tf.norm(anchor - a["positive"], axis=1) - tf.norm(anchor - a["negative"], axis=1)
    return _reduce(tf.nn.relu(gap + p["margin"]), reduction)


def _contrastive(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
    d = tf.norm(a["input"] - a["input2"], axis=1)
    label = a["target"]
    gap = tf.nn.relu(p["margin"] - d)
    return _reduce((label * d * d + (1.0 - label) * gap * gap) / 2.0, reduction)


NATIVE: dict[str, Impl] = {
    "mse": _keras(keras.losses.MeanSquaredError, True),
    "mae": _keras(keras.losses.MeanAbsoluteError, True),
    "huber": _keras(keras.losses.Huber, True, params=("delta",)),
    "log_cosh": _keras(keras.losses.LogCosh, True),
    "msle": _keras(keras.losses.MeanSquaredLogarithmicError, True),
    "poisson_nll": _keras(keras.losses.Poisson, True),
    "bce": _keras(keras.losses.BinaryCrossentropy, True),
    "bce_logits": _keras(keras.losses.BinaryCrossentropy, True, from_logits=True),
    "focal": _keras(keras.losses.BinaryFocalCrossentropy, True, params=("gamma",), from_logits=True),
    "cross_entropy": _keras(keras.losses.SparseCategoricalCrossentropy, False, from_logits=True),
    "soft_cross_entropy": _keras(keras.losses.CategoricalCrossentropy, False, from_logits=True),
    "categorical_ce": _keras(keras.losses.CategoricalCrossentropy, False),
    "kl_div": _keras(keras.losses.KLDivergence, False),
    "hinge": _keras(keras.losses.Hinge, True),
    "squared_hinge": _keras(keras.losses.SquaredHinge, True),
    "categorical_hinge": _keras(keras.losses.CategoricalHinge, False, target_fn=_one_hot),
    "cosine_similarity": _keras(keras.losses.CosineSimilarity, False),
    "l2_penalty": _regularizer(keras.regularizers.L2, "l2"),
    "l1_penalty": _regularizer(keras.regularizers.L1, "l1"),
}

COMPOSED: dict[str, Impl] = {
    "smooth_l1": _smooth_l1,
    "nll": _nll,
    "multi_margin": _multi_margin,
    "gaussian_nll": _gaussian_nll,
    "soft_margin": lambda a, r, p: _reduce(tf.math.softplus(-a["target"] * a["input"]), r),
    "margin_ranking": lambda a, r, p: _reduce(tf.nn.relu(-a["target"] * (a["input"] - a["input2"]) + p["margin"]), r),
    "contrastive": _contrastive,
    "triplet_margin": _triplet_margin,
}


def _tape(function: Impl) -> Impl:
    def gradient(a: dict[str, Any], reduction: str, p: dict[str, float]) -> tf.Tensor:
        x = a["input"]
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = function(a, reduction, p)
        return tape.gradient(loss, x)
    return gradient


# Cells the framework cannot run or computes far less accurately than the dtype allows, and why
# (the cell tests check each still shows).
KNOWN = (
    Known(INACCURATE, "log_cosh", "keras LogCosh subtracts log(2.0) computed in float32, then cast to float64",
          "native", ("float64",)),
    Known(INACCURATE, "log_cosh", "keras LogCosh computes x + softplus(-2x) - log(2), which cancels for small x",
          "native", ("float32",)),
    Known(INACCURATE, "poisson_nll", "keras Poisson takes log(y_pred + epsilon()), epsilon 1e-7", "native"),
    Known(INACCURATE, "msle", "keras MeanSquaredLogarithmicError subtracts log(y_pred + 1) and log(y_true + 1), "
                              "which cancels when they are close", "native"),
    Known(INACCURATE, "focal", "keras BinaryFocalCrossentropy takes 1 - p_t with p_t = sigmoid(z), which cancels "
                               "when p_t is close to 1; compiled by XLA in float32 it shows past the bound, eager not",
          "native", ("float32",), mode="compiled"),
)


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    impls = {"native": NATIVE, "composed": COMPOSED}
    gradient_method = "tf.GradientTape"
    known = KNOWN
    modes = ("eager", "compiled")

    def compile(self, function: Impl) -> Impl:
        # XLA; a fresh tf.function traces and compiles anew, so every compilation is cold.
        return tf.function(function, jit_compile=True)

    def version(self) -> str:
        return f"{tf.__version__} (keras {keras.__version__})"

    def devices(self) -> list[str]:
        return ["cpu", "cuda"] if tf.config.list_physical_devices("GPU") else ["cpu"]

    def settings(self) -> dict[str, Any]:
        """Keras's epsilon and float type, and whether oneDNN's fused CPU kernels are on
        (TensorFlow says so at start-up; they may round differently), with
        TF_ENABLE_ONEDNN_OPTS as set (None: TensorFlow's default)."""
        return {"keras.config.epsilon()": keras.config.epsilon(), "keras.config.floatx()": keras.config.floatx(),
                "oneDNN custom operations": "on" if ONEDNN_ON else "off",
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}

    def device_name(self, device: str) -> str | None:
        if device != "cuda":
            return None
        return tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get("device_name",
                                                                                                       "GPU")

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> tf.Tensor:
        if dtype is None:
            return tf.constant(np.asarray(array, dtype=np.int64))
        # Values are already representable in dtype, so the float64 detour is exact.
        return tf.cast(tf.constant(np.asarray(array, dtype=np.float64)), _DTYPES[dtype])

    def to_output(self, result: tf.Tensor) -> Output:
        return Output(np.asarray(result.numpy()).astype(np.float64).reshape(-1), result.dtype.name)

    def gradient(self, spec: LossSpec, impl: str) -> Impl:
        return _tape(self.impls[impl][spec.name])

    def nbytes(self, tensor: tf.Tensor) -> int:
        return int(tf.size(tensor)) * tensor.dtype.size

    def synchronize(self, result: Any, device: str) -> None:
        if result is not None:
            result.numpy()  # eager ops may still be queued (async execution, GPU streams)

    def stream_kernels(self, device: str, elements: int) -> dict[str, Callable[[], Any]]:
        # TensorFlow ops allocate their output: no in-place copy, so scale, add and triad.
        with self.context(device):
            b, c = tf.fill((elements,), tf.constant(2.0, tf.float64)), tf.fill((elements,), tf.constant(0.5, tf.float64))
        return {"scale": lambda: b * 3.0, "add": lambda: b + c, "triad": lambda: b + 3.0 * c}

    def context(self, device: str) -> Any:
        return tf.device("/GPU:0" if device == "cuda" else "/CPU:0")


ADAPTER = TensorFlowAdapter()
