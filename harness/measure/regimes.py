"""Seeded input regimes. Values are drawn, then put into the target dtype, so
every value is exactly representable there, and the same seed gives
bit-identical inputs on every machine.

Items (elements of element-wise losses, rows of row-wise ones) are drawn in
blocks seeded by (seed, loss, regime, dtype, block), so the input of size n is
a prefix of the input of any larger size: references and caches are shared
across sizes.

- typical:       standard-normal reals, exponential(1) non-negative values,
                 uniform probabilities, random labels
- wide:          magnitudes log-uniform over the dtype's whole exponent range
                 (subnormals to the top binade), both signs for reals
- saturated:     logits |z| log-uniform in [10, 1e4]; probabilities within 1e-3
                 of 0 or 1, down to the dtype's smallest subnormal
- near_overflow: magnitudes log-uniform in [2 ln(max), sqrt(max)/2], where exp
                 overflows and sums of squares overflow while the loss is finite
- cancellation:  the input a few ulps (1-4) from the target (or from the
                 target's score, or from the other embedding, or the negative
                 embedding a few ulps from the positive one)
- edge:          0, +-1, +-inf, nan, +-max, +-min normal, +-smallest subnormal
                 (the non-negative ones for non-negative arguments, without 0 for
                 positive ones); probabilities 0, 1, the neighbours of 0 and 1, 0.5, nan
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np

from harness.model.dtypes import NUMPY_DTYPES as DTYPES
from harness.model.spec import ALL_REGIMES as REGIMES
from harness.model.spec import ArgSpec, Domain, Layout, LossSpec
from reference.formats import FORMATS

BLOCK = 256  # items per seeded block
DEFAULT_WIDTH = 10  # classes / features per row of row-wise losses

Generator = Callable[[Domain, tuple[int, ...], np.random.Generator, str], np.ndarray]


def in_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded into ``dtype``, held as float64 (overflow gives inf)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(DTYPES[dtype]).astype(np.float64)


def _log_uniform(rng: np.random.Generator, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(high), shape))


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape)


def _labels(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.choice([-1.0, 1.0] if domain is Domain.SIGN_LABEL else [0.0, 1.0], size=shape)


_POSITIVE_REALS = (Domain.NONNEGATIVE, Domain.POSITIVE)


def _into_domain(values: np.ndarray, domain: Domain, dtype: str) -> np.ndarray:
    """Values already in dtype, moved onto the domain's boundary where they left it
    (a nudge below 0, a value that rounded to 0 where 0 is excluded)."""
    if domain in (Domain.PROBABILITY, Domain.DISTRIBUTION):
        return np.clip(values, 0.0, 1.0)
    if domain is Domain.NONNEGATIVE:
        return np.maximum(values, 0.0)
    if domain is Domain.POSITIVE:
        return np.maximum(values, float(FORMATS[dtype].smallest_subnormal))
    return values


def _rows_sum_to_one(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum(axis=-1, keepdims=True)


def _typical(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator, dtype: str) -> np.ndarray:
    if domain is Domain.REAL:
        return in_dtype(rng.standard_normal(shape), dtype)
    if domain in _POSITIVE_REALS:
        return _into_domain(in_dtype(rng.exponential(1.0, shape), dtype), domain, dtype)
    if domain is Domain.PROBABILITY:
        return in_dtype(rng.uniform(0.0, 1.0, shape), dtype)
    if domain is Domain.DISTRIBUTION:
        return in_dtype(_rows_sum_to_one(rng.uniform(0.05, 1.0, shape)), dtype)
    return _labels(domain, shape, rng)


def _wide(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator, dtype: str) -> np.ndarray:
    fmt = FORMATS[dtype]
    tiny, top = float(fmt.smallest_subnormal), float(fmt.max_finite)
    if domain is Domain.REAL:
        return in_dtype(_signs(rng, shape) * _log_uniform(rng, tiny, top, shape), dtype)
    if domain in _POSITIVE_REALS:
        return _into_domain(in_dtype(_log_uniform(rng, tiny, top, shape), dtype), domain, dtype)
    if domain is Domain.PROBABILITY:
        return in_dtype(_log_uniform(rng, tiny, 1.0, shape), dtype)
    if domain is Domain.DISTRIBUTION:
        return in_dtype(_rows_sum_to_one(_log_uniform(rng, 2.0**-60, 1.0, shape)), dtype)
    return _labels(domain, shape, rng)


def _saturated(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator, dtype: str) -> np.ndarray:
    tiny = float(FORMATS[dtype].smallest_subnormal)
    if domain is Domain.REAL:
        return in_dtype(_signs(rng, shape) * _log_uniform(rng, 10.0, 1e4, shape), dtype)
    if domain in _POSITIVE_REALS:
        return in_dtype(_log_uniform(rng, 10.0, 1e4, shape), dtype)
    if domain is Domain.PROBABILITY:
        near = _log_uniform(rng, tiny, 1e-3, shape)
        return in_dtype(np.where(rng.random(shape) < 0.5, near, 1.0 - near), dtype)
    if domain is Domain.DISTRIBUTION:
        weights = _log_uniform(rng, tiny, 1e-3, shape)
        hot = rng.integers(0, shape[-1], size=shape[:-1])
        np.put_along_axis(weights, hot[..., None], 1.0, axis=-1)
        return in_dtype(_rows_sum_to_one(weights), dtype)
    return _labels(domain, shape, rng)


def _near_overflow(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator, dtype: str) -> np.ndarray:
    top = float(FORMATS[dtype].max_finite)
    magnitudes = _log_uniform(rng, 2 * math.log(top), math.sqrt(top) / 2, shape)
    if domain is Domain.REAL:
        return in_dtype(_signs(rng, shape) * magnitudes, dtype)
    if domain in _POSITIVE_REALS:
        return in_dtype(magnitudes, dtype)
    return _typical(domain, shape, rng, dtype)


def _edge(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator, dtype: str) -> np.ndarray:
    fmt = FORMATS[dtype]
    tiny, top, normal = float(fmt.smallest_subnormal), float(fmt.max_finite), 2.0**fmt.emin
    if domain is Domain.REAL:
        specials = [0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, top, -top, normal, -normal, tiny, -tiny]
    elif domain in _POSITIVE_REALS:
        specials = [1.0, math.inf, math.nan, top, normal, tiny] + ([0.0] if domain is Domain.NONNEGATIVE else [])
    elif domain in (Domain.PROBABILITY, Domain.DISTRIBUTION):
        below_one = 1.0 - 2.0**-fmt.precision
        specials = [0.0, 1.0, tiny, normal, below_one, 0.5, math.nan]
    else:
        return _labels(domain, shape, rng)
    return np.asarray(specials)[rng.integers(0, len(specials), size=shape)]


def _nudge(values: np.ndarray, rng: np.random.Generator, dtype: str) -> np.ndarray:
    """Each value moved 1 to 4 ulps of ``dtype`` up or down."""
    kind = DTYPES[dtype]
    moved = values.astype(kind)
    steps = rng.integers(1, 5, size=values.shape)
    direction = np.where(rng.random(values.shape) < 0.5, -np.inf, np.inf).astype(kind)
    for step in range(1, 5):
        moved = np.where(steps >= step, np.nextafter(moved, direction), moved)
    return moved.astype(np.float64)


_GENERATORS: dict[str, Generator] = {
    "typical": _typical, "wide": _wide, "saturated": _saturated,
    "near_overflow": _near_overflow, "cancellation": _typical, "edge": _edge,
}


def _cancel(spec: LossSpec, arrays: dict[str, np.ndarray], rng: np.random.Generator, dtype: str) -> None:
    """Move one argument to within a few ulps of another, as the spec's cancellation says."""
    moved = spec.cancellation
    if moved is None:
        return
    near, x = arrays[moved.near], arrays[moved.moves]
    if moved.how == "class_score":
        rows = np.arange(x.shape[0])
        arrays[moved.moves] = _nudge(np.repeat(x[rows, near][:, None], x.shape[1], axis=1), rng, dtype)
    elif moved.how == "sign_margin":
        arrays[moved.moves] = near * _nudge(np.ones_like(x), rng, dtype)
    else:
        arrays[moved.moves] = _into_domain(_nudge(near, rng, dtype), spec.arg(moved.moves).domain, dtype)


def _block_rng(spec: LossSpec, dtype: str, regime: str, seed: int, block: int, width: int) -> np.random.Generator:
    key = [seed, block, width, zlib.crc32(spec.name.encode()), REGIMES.index(regime), list(DTYPES).index(dtype)]
    return np.random.default_rng(key)


def _arg_block(arg: ArgSpec, spec: LossSpec, regime: str, rng: np.random.Generator, dtype: str,
               items: int, width: int) -> np.ndarray:
    if arg.domain is Domain.CLASS_INDEX:
        return rng.integers(0, width, size=items)
    shape = (items,) if arg.per_row or spec.layout is Layout.ELEMENTWISE else (items, width)
    return _GENERATORS[regime](arg.domain, shape, rng, dtype)


def items_for(spec: LossSpec, size: int, width: int) -> int:
    """Number of items (elements or rows) of an input of ``size`` elements."""
    return size if spec.layout is Layout.ELEMENTWISE else max(size // width, 1)


def generate(spec: LossSpec, dtype: str, regime: str, seed: int, size: int,
             width: int = DEFAULT_WIDTH) -> dict[str, np.ndarray]:
    """Inputs of ``size`` elements for ``spec`` in ``regime``, as float64 arrays holding
    dtype values (int64 for class indices)."""
    return generate_items(spec, dtype, regime, seed, 0, items_for(spec, size, width), width)


def generate_items(spec: LossSpec, dtype: str, regime: str, seed: int, start: int, stop: int,
                   width: int) -> dict[str, np.ndarray]:
    """Items [start, stop) of the seeded stream (only the blocks covering them are drawn)."""
    if regime not in spec.regimes:
        raise ValueError(f"{spec.name} does not use regime {regime!r} (regimes: {', '.join(spec.regimes)})")
    first = start // BLOCK
    blocks = []
    for b in range(first, -(-stop // BLOCK)):
        rng = _block_rng(spec, dtype, regime, seed, b, width)
        arrays = {a.name: _arg_block(a, spec, regime, rng, dtype, BLOCK, width) for a in spec.args}
        if regime == "cancellation":
            _cancel(spec, arrays, rng, dtype)
        blocks.append(arrays)
    offset = start - first * BLOCK
    return {a.name: np.concatenate([blk[a.name] for blk in blocks])[offset:offset + stop - start] for a in spec.args}


def typical(spec: LossSpec, dtype: str, size: int, seed: int = 0, width: int = DEFAULT_WIDTH) -> dict[str, np.ndarray]:
    return generate(spec, dtype, "typical", seed, size, width)
