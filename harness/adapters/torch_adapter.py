"""PyTorch: torch.nn.functional losses where they exist (impl 'native'),
composed from torch primitives where they do not (impl 'composed')."""
from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.adapters.base import COMPILE_CACHE_ENV, FAILS, INACCURATE, Adapter, Impl, Known, Output, api_call, reduce
from harness.model.spec import LossSpec

# Where inductor keeps what it compiles. A folder the user chose (TORCHINDUCTOR_CACHE_DIR)
# is used and never emptied. A sweep's workers share one in its COMPILE_CACHE_ENV folder:
# what one compiled, first the C++ builds that check the CPU's vector instructions (seconds,
# once per folder), the others load. Elsewhere, a folder of this process's own. A cold
# compilation (cold_compiler) compiles into a new empty folder, removed after it, so it
# never reads nor empties anybody else's.
_OWN_FOLDERS: list[str] = []


def _own_folder() -> str:
    """A new empty folder, removed when the process exits if not before."""
    _OWN_FOLDERS.append(tempfile.mkdtemp(prefix="lossbench-inductor-"))
    return _OWN_FOLDERS[-1]


def _remove_own_folders() -> None:
    for folder in _OWN_FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)
    _OWN_FOLDERS.clear()


if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _shared = os.environ.get(COMPILE_CACHE_ENV)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(_shared, "torchinductor") if _shared else _own_folder()
atexit.register(_remove_own_folders)

# A worker compiles many losses through shared adapter code (one code object, one
# recompilation per loss, dtype, shape and reduction): dynamo's default of 8 per code
# object would run every later one eagerly without a word. The limit is raised, and
# reaching it is an error (a result that says so), never a silent fallback.
torch._dynamo.config.recompile_limit = 4096
torch._dynamo.config.accumulated_recompile_limit = 65536
torch._dynamo.config.fail_on_recompile_limit_hit = True

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


_reduce = functools.partial(reduce, mean=torch.mean, total=torch.sum)


def _kl_div(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
    # F.kl_div takes log q as input; 'batchmean' is the mathematical mean over rows,
    # and its 'none' is element-wise, so rows are summed for per-sample values.
    log_q = torch.log(a["input"])
    if reduction == "none":
        return api_call(F.kl_div, log_q, a["target"], reduction="none").sum(dim=1)
    return api_call(F.kl_div, log_q, a["target"], reduction="batchmean" if reduction == "mean" else "sum")


def _log_cosh(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
    # log1p(2 sinh(d/2)^2) near 0 (the common d + softplus(-2d) - log 2 cancels there),
    # |d| + log1p(exp(-2|d|)) - log 2 beyond (no overflow).
    d = torch.abs(a["input"] - a["target"])
    small = torch.log1p(2.0 * torch.sinh(0.5 * d) ** 2)
    large = d + torch.log1p(torch.exp(-2.0 * d)) - math.log(2.0)
    return _reduce(torch.where(d < 1.0, small, large), reduction)


def _hinge_margin(a: dict[str, Any]) -> torch.Tensor:
    return torch.clamp(1.0 - a["target"] * a["input"], min=0.0)


def _categorical_hinge(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
    s, t = a["input"], a["target"]
    positive = s.gather(1, t[:, None]).squeeze(1)
    others = s.masked_fill(F.one_hot(t, s.shape[1]).bool(), -math.inf)
    negative = others.max(dim=1).values
    return _reduce(torch.clamp(1.0 + negative - positive, min=0.0), reduction)


def _contrastive(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
    d = torch.linalg.vector_norm(a["input"] - a["input2"], dim=1)
    label = a["target"]
    gap = torch.clamp(p["margin"] - d, min=0.0)
    return _reduce((label * d * d + (1.0 - label) * gap * gap) / 2.0, reduction)


def _focal(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
    # As torchvision.ops.sigmoid_focal_loss without class weighting: BCE with logits
    # times (1 - p_t)^gamma, p_t = p y + (1 - p)(1 - y).
    z, y = a["input"], a["target"]
    prob = torch.sigmoid(z)
    p_t = prob * y + (1.0 - prob) * (1.0 - y)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    return _reduce(ce * (1.0 - p_t) ** p["gamma"], reduction)


def _native(api: Any, names: tuple[str, ...] = ("input", "target"), params: tuple[str, ...] = (),
            **fixed: Any) -> Impl:
    """torch.nn.functional ``api`` on the named arguments, with the loss parameters
    (same names in torch) and ``fixed`` options passed as keywords."""
    def impl(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
        options = {name: p[name] for name in params}
        return api_call(api, *(a[n] for n in names), reduction=reduction, **fixed, **options)
    return impl


NATIVE: dict[str, Impl] = {
    "mse": _native(F.mse_loss),
    "mae": _native(F.l1_loss),
    "huber": _native(F.huber_loss, params=("delta",)),
    "smooth_l1": _native(F.smooth_l1_loss, params=("beta",)),
    "poisson_nll": _native(F.poisson_nll_loss, log_input=False, full=False),
    "gaussian_nll": _native(F.gaussian_nll_loss, ("input", "target", "var"), full=False),
    "bce": _native(F.binary_cross_entropy),
    "bce_logits": _native(F.binary_cross_entropy_with_logits),
    "soft_margin": _native(F.soft_margin_loss),
    "margin_ranking": _native(F.margin_ranking_loss, ("input", "input2", "target"), params=("margin",)),
    "cross_entropy": _native(F.cross_entropy),
    "soft_cross_entropy": _native(F.cross_entropy),
    "nll": _native(F.nll_loss),
    "kl_div": _kl_div,
    "multi_margin": _native(F.multi_margin_loss, params=("margin",)),
    "triplet_margin": _native(F.triplet_margin_loss, ("input", "positive", "negative"), params=("margin",)),
}

COMPOSED: dict[str, Impl] = {
    "log_cosh": _log_cosh,
    "msle": lambda a, r, p: F.mse_loss(torch.log1p(a["input"]), torch.log1p(a["target"]), reduction=r),
    "focal": _focal,
    "hinge": lambda a, r, p: _reduce(_hinge_margin(a), r),
    "squared_hinge": lambda a, r, p: _reduce(_hinge_margin(a) ** 2, r),
    "categorical_ce": lambda a, r, p: _reduce(-torch.xlogy(a["target"], a["input"]).sum(dim=1), r),
    "categorical_hinge": _categorical_hinge,
    "contrastive": _contrastive,
    "cosine_similarity": lambda a, r, p: _reduce(-F.cosine_similarity(a["input"], a["target"], dim=1), r),
    "l2_penalty": lambda a, r, p: _reduce(a["input"] ** 2, r),
    "l1_penalty": lambda a, r, p: _reduce(a["input"].abs(), r),
}


def _autograd(function: Impl) -> Impl:
    def gradient(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
        with torch.enable_grad():
            x = a["input"].detach().requires_grad_()
            (g,) = torch.autograd.grad(function({**a, "input": x}, reduction, p), x)
        return g
    return gradient


# Cells the framework cannot run or computes far less accurately than the dtype allows, and why
# (the cell tests check each still shows).
KNOWN = (
    Known(FAILS, "multi_margin", "torch has no half-precision CPU kernel for multi_margin_loss "
          "(compiled, inductor writes its own)", dtypes=("float16", "bfloat16"), device="cpu", mode="eager"),
    Known(INACCURATE, "poisson_nll", "F.poisson_nll_loss(log_input=False) takes log(input + eps), eps=1e-8",
          "native"),
    Known(INACCURATE, "triplet_margin", "F.triplet_margin_loss adds eps=1e-6 to every difference before the norm",
          "native"),
    Known(INACCURATE, "msle", "log1p(x) - log1p(y) cancels when x is close to y", "composed"),
    Known(INACCURATE, "focal", "1 - p_t, with p_t = sigmoid(z), cancels when p_t is close to 1", "composed"),
)


class TorchAdapter(Adapter):
    name = "torch"
    impls = {"native": NATIVE, "composed": COMPOSED}
    gradient_method = "torch.autograd.grad"
    known = KNOWN
    modes = ("eager", "compiled")

    def compile(self, function: Impl) -> Impl:
        # Inductor, the default backend (C++ on CPU). Each shape compiled for itself:
        # dynamo's default compiles a function's second shape with dynamic shapes and
        # serves later ones from it, so values would depend on what the process met before.
        return torch.compile(function, dynamic=False)

    @contextmanager
    def cold_compiler(self) -> Iterator[None]:
        torch._dynamo.reset()
        kept = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        cold = os.environ["TORCHINDUCTOR_CACHE_DIR"] = _own_folder()
        try:
            yield
        finally:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = kept
            _OWN_FOLDERS.remove(cold)
            shutil.rmtree(cold, ignore_errors=True)

    @contextmanager
    def threads(self, count: int | None) -> Iterator[None]:
        # torch splits reductions and vectorised loops into a part per thread (beyond
        # 32768 elements eager; inductor's kernels are compiled again for another count).
        if count is None:
            yield
            return
        kept = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(kept)

    def version(self) -> str:
        return torch.__version__

    def devices(self) -> list[str]:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def settings(self) -> dict[str, Any]:
        return {"torch.get_default_dtype()": str(torch.get_default_dtype())}

    def device_name(self, device: str) -> str | None:
        return torch.cuda.get_device_name(0) if device == "cuda" else None

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> torch.Tensor:
        if dtype is None:
            return torch.from_numpy(np.asarray(array, dtype=np.int64)).to(device)
        # Values are already representable in dtype, so the float64 detour is exact.
        return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(device=device, dtype=_DTYPES[dtype])

    def to_output(self, result: torch.Tensor) -> Output:
        dtype = str(result.dtype).removeprefix("torch.")
        return Output(result.detach().to("cpu", torch.float64).numpy().reshape(-1), dtype)

    def gradient(self, spec: LossSpec, impl: str) -> Impl:
        return _autograd(self.impls[impl][spec.name])

    def nbytes(self, tensor: torch.Tensor) -> int:
        return tensor.numel() * tensor.element_size()

    def synchronize(self, result: Any, device: str) -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def stream_kernels(self, device: str, elements: int) -> dict[str, Callable[[], Any]]:
        a, b, c = (torch.full((elements,), v, dtype=torch.float64, device=device) for v in (1.0, 2.0, 0.5))
        return {"copy": lambda: a.copy_(b), "scale": lambda: torch.mul(b, 3.0, out=a),
                "add": lambda: torch.add(b, c, out=a), "triad": lambda: torch.add(b, c, alpha=3.0, out=a)}

    def context(self, device: str) -> torch.no_grad:
        return torch.no_grad()


ADAPTER = TorchAdapter()
