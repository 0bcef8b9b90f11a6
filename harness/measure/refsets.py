"""Reference values for a whole input set: the records they are held in.

An input set is (loss, params, dtype, regime, seed, width); its inputs of any
size are prefixes of one seeded stream, so the items of the largest size are
settled once and every smaller size's reduction comes from them. What is
settled is a measured quantity (harness.measure.quantity: the loss value, or
its gradient under one reduction), in chunks of items that run in parallel.

Each reference number is stored as a float64 pair (hi, lo) with hi + lo within
2**-106 relative (2**-1074 absolute at the bottom of the range) of the exact
value (enough for vectorised ULP metrics; reference.certify.split), plus its
correctly rounded value in the set's dtype and whether it settled.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.measure import regimes
from harness.model import registry
from harness.model.spec import Layout
from reference.formats import round_pairs
from reference.certify import RefValue

if TYPE_CHECKING:
    from harness.measure.quantity import Quantity

CHUNK = 2000  # items per parallel reference task
FIELDS = ("hi", "lo", "rounded", "settled", "precision")


@functools.cache
def code_version(files: tuple[str, ...]) -> str:
    """A hash of the code that generates a set's inputs or computes its reference:
    the reference cache key, so a changed formula never serves a stale value."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for name in files:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class InputSet:
    loss: str
    params: tuple[tuple[str, float], ...]
    dtype: str
    regime: str
    seed: int
    width: int

    @classmethod
    def with_defaults(cls, loss: str, dtype: str, regime: str, seed: int = 0,
                      width: int = regimes.DEFAULT_WIDTH) -> InputSet:
        """The loss's set at its default parameters; element-wise losses have no rows (width 1)."""
        spec = registry.get(loss)
        return cls(loss, tuple(spec.resolve_params({}).items()), dtype, regime, seed,
                   width if spec.layout is Layout.ROWWISE else 1)

    def key(self, quantity: Quantity) -> str:
        """The cache key of the set's reference of ``quantity``: the set, what of
        its loss's spec shapes inputs and reference, and the code that computes them."""
        spec = registry.get(self.loss)
        facts = [spec.layout.value, repr(spec.args), repr(spec.cancellation), spec.reference.__qualname__,
                 spec.derivative.__qualname__]
        content = [self.loss, self.params, self.dtype, self.regime, self.seed, self.width, facts,
                   *quantity.key_parts(), code_version(quantity.code_files)]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:24]

    def inputs(self, size: int) -> dict[str, np.ndarray]:
        return regimes.generate(registry.get(self.loss), self.dtype, self.regime, self.seed, size, self.width)

    def items(self, size: int) -> int:
        return regimes.items_for(registry.get(self.loss), size, self.width)


@dataclass(frozen=True)
class RefArrays:
    """Reference numbers as arrays: hi + lo ~ exact value, rounded = in the set's dtype."""

    hi: np.ndarray
    lo: np.ndarray
    rounded: np.ndarray
    settled: np.ndarray
    precision: np.ndarray

    def __getitem__(self, index: slice | int) -> RefArrays:
        return RefArrays(*(np.atleast_1d(getattr(self, f)[index]) for f in FIELDS))

    def __len__(self) -> int:
        return len(self.hi)

    @classmethod
    def concatenate(cls, parts: Sequence[RefArrays]) -> RefArrays:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


@dataclass(frozen=True)
class GradArrays:
    """A reference gradient, one entry per input element; ``defined`` is False where
    the loss has no derivative (ref.hi is nan there and carries no meaning)."""

    ref: RefArrays
    defined: np.ndarray


@dataclass(frozen=True)
class ChunkTask:
    """Items [start, stop) of a set's input of ``size``, settled as ``quantity``;
    ``boundaries`` are the item counts of the sizes being reduced (prefix ends)."""

    inputset: InputSet
    quantity: Quantity
    size: int
    start: int
    stop: int
    boundaries: tuple[int, ...]


def chunk_tasks(inputset: InputSet, sizes: Sequence[int], quantity: Quantity) -> list[ChunkTask]:
    largest = max(sizes)
    count = inputset.items(largest)
    boundaries = tuple(sorted({inputset.items(s) for s in sizes}))
    return [ChunkTask(inputset, quantity, largest, a, min(a + CHUNK, count), boundaries)
            for a in range(0, count, CHUNK)]


def settle_chunk(task: ChunkTask) -> object:
    """Settle one chunk of items (runs in a worker)."""
    return task.quantity.settle(task)


def to_arrays(refs: Sequence[RefValue], dtype: str) -> RefArrays:
    pairs = [r.pair for r in refs]
    hi, lo = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    return RefArrays(
        hi=hi, lo=lo, rounded=round_pairs(hi, lo, dtype),
        settled=np.array([r.settled for r in refs], dtype=bool),
        precision=np.array([r.precision for r in refs], dtype=np.int32),
    )


def gradient_arrays(values: Sequence[RefValue], dtype: str) -> GradArrays:
    """Reference gradient components as arrays; an undefined one becomes nan, not defined."""
    defined = np.array([v.lower is not None for v in values], dtype=bool)
    return GradArrays(to_arrays(values, dtype), defined)
