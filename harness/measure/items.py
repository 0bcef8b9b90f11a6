"""A loss's inputs as the reference sees them: per-item tuples of exact values,
and its formulas with their parameters bound exactly. Part of the reference
cache key (harness.measure.refsets.code_version)."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np

from harness.model.spec import Layout, LossSpec
from reference.exact import to_mpf_list


def reference_items(spec: LossSpec, arrays: Mapping[str, np.ndarray]) -> list[tuple]:
    """Per-item argument tuples of exact values, in the spec's argument order."""
    exact = {a.name: (to_mpf_list(arrays[a.name]) if a.domain.is_float else [int(v) for v in arrays[a.name]])
             for a in spec.args}
    if spec.layout is Layout.ELEMENTWISE:
        return list(zip(*(exact[a.name] for a in spec.args)))
    rows, width = arrays["input"].shape
    return [
        tuple(exact[a.name][b] if a.per_row else exact[a.name][b * width:(b + 1) * width] for a in spec.args)
        for b in range(rows)
    ]


def with_params(function: Callable[..., Any], params: Mapping[str, float]) -> Callable[..., Any]:
    """A loss's reference formula or derivative with its parameters bound as exact mp values."""
    return functools.partial(function, **{k: mpmath.mpf(v) for k, v in params.items()})
