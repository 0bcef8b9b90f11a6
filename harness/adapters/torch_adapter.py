"""PyTorch: torch.nn.functional losses where they exist (impl 'native'),
composed from torch primitives where they do not (impl 'composed')."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.adapters.base import Adapter, Impl, Output

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def _reduce(items: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return items.mean()
    if reduction == "sum":
        return items.sum()
    return items


def _kl_div(a: dict[str, Any], reduction: str, p: dict[str, float]) -> torch.Tensor:
    # F.kl_div takes log q as input; 'batchmean' is the mathematical mean over rows,
    # and its 'none' is element-wise, so rows are summed for per-sample values.
    log_q = torch.log(a["input"])
    if reduction == "none":
        return F.kl_div(log_q, a["target"], reduction="none").sum(dim=1)
    return F.kl_div(log_q, a["target"], reduction="batchmean" if reduction == "mean" else "sum")


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


NATIVE: dict[str, Impl] = {
    "mse": lambda a, r, p: F.mse_loss(a["input"], a["target"], reduction=r),
    "mae": lambda a, r, p: F.l1_loss(a["input"], a["target"], reduction=r),
    "huber": lambda a, r, p: F.huber_loss(a["input"], a["target"], reduction=r, delta=p["delta"]),
    "smooth_l1": lambda a, r, p: F.smooth_l1_loss(a["input"], a["target"], reduction=r, beta=p["beta"]),
    "bce": lambda a, r, p: F.binary_cross_entropy(a["input"], a["target"], reduction=r),
    "bce_logits": lambda a, r, p: F.binary_cross_entropy_with_logits(a["input"], a["target"], reduction=r),
    "cross_entropy": lambda a, r, p: F.cross_entropy(a["input"], a["target"], reduction=r),
    "soft_cross_entropy": lambda a, r, p: F.cross_entropy(a["input"], a["target"], reduction=r),
    "nll": lambda a, r, p: F.nll_loss(a["input"], a["target"], reduction=r),
    "kl_div": _kl_div,
    "multi_margin": lambda a, r, p: F.multi_margin_loss(a["input"], a["target"], margin=p["margin"], reduction=r),
}

COMPOSED: dict[str, Impl] = {
    "log_cosh": _log_cosh,
    "hinge": lambda a, r, p: _reduce(_hinge_margin(a), r),
    "squared_hinge": lambda a, r, p: _reduce(_hinge_margin(a) ** 2, r),
    "categorical_hinge": _categorical_hinge,
    "contrastive": _contrastive,
}


class TorchAdapter(Adapter):
    name = "torch"
    impls = {"native": NATIVE, "composed": COMPOSED}

    def version(self) -> str:
        return torch.__version__

    def devices(self) -> list[str]:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def device_name(self, device: str) -> str:
        return torch.cuda.get_device_name(0) if device == "cuda" else super().device_name(device)

    def to_native(self, array: np.ndarray, dtype: str | None, device: str) -> torch.Tensor:
        if dtype is None:
            return torch.from_numpy(np.asarray(array, dtype=np.int64)).to(device)
        # Values are already representable in dtype, so the float64 detour is exact.
        return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(device=device, dtype=_DTYPES[dtype])

    def to_output(self, result: torch.Tensor) -> Output:
        dtype = str(result.dtype).removeprefix("torch.")
        return Output(result.detach().to("cpu", torch.float64).numpy().reshape(-1), dtype)

    def known_failure(self, loss: str, impl: str, dtype: str, device: str) -> str | None:
        if loss == "multi_margin" and device == "cpu" and dtype in ("float16", "bfloat16"):
            return f"torch has no {dtype} CPU kernel for multi_margin_loss"
        return None

    def context(self, device: str) -> torch.no_grad:
        return torch.no_grad()


ADAPTER = TorchAdapter()
