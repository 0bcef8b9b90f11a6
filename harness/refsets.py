"""Reference values for a whole input set, shared and cached.

An input set is (loss, params, dtype, regime, seed, width); its inputs of any
size are prefixes of one seeded stream, so the items of the largest size are
settled once and every smaller size's mean and sum come from exact prefix sums.
Every framework and implementation evaluated on the set reads the same
reference. Results are cached on disk, keyed by the set's content and by a hash
of the reference and regime code, so a rerun computes nothing and a changed
formula never serves a stale value.

The reference gradient of a set (d(reduced loss)/d(input) under one reduction)
is settled and cached the same way, per size: under 'mean' the items' shared
derivatives are divided by each size's item count (reference.gradients).

Each reference number is stored as a float64 pair (hi, lo) with hi + lo within
2**-106 relative (2**-1074 absolute at the bottom of the range) of the exact
value (enough for vectorised ULP metrics), plus its
correctly rounded value in the set's dtype and whether it settled.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np
from mpmath.libmp import libmpf, to_float

from harness import regimes, registry
from harness.spec import Layout
from harness.evaluate import reference_items, with_params
from reference import escalation, formats, gradients
from reference.formulas import exact_total, is_exact
from reference.escalation import RefValue

REDUCED = ("mean", "sum")
CHUNK = 2000  # items per parallel reference task
_FIELDS = ("hi", "lo", "rounded", "settled", "precision")
# Everything a cached reference depends on: formulas, settlement, rounding, inputs, layout.
_CODE_FILES = ("reference/formulas.py", "reference/escalation.py", "reference/formats.py",
               "reference/exact.py", "harness/regimes.py", "harness/evaluate.py", "harness/refsets.py")
# A reference gradient depends on those and on the derivatives.
_GRADIENT_CODE_FILES = (*_CODE_FILES, "reference/derivatives.py", "reference/gradients.py")


@functools.cache
def code_version(files: tuple[str, ...] = _CODE_FILES) -> str:
    root = Path(__file__).resolve().parent.parent
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

    def key(self, gradient: str | None = None) -> str:
        """The set's cache key; with ``gradient`` (a reduction), that of its reference gradient."""
        content = [self.loss, self.params, self.dtype, self.regime, self.seed, self.width, code_version()]
        if gradient is not None:
            content += [gradient, code_version(_GRADIENT_CODE_FILES)]
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
        return RefArrays(*(np.atleast_1d(getattr(self, f)[index]) for f in _FIELDS))

    def __len__(self) -> int:
        return len(self.hi)


@dataclass(frozen=True)
class SetReference:
    items: RefArrays
    reduced: dict[tuple[int, str], RefArrays]  # (size, reduction) -> one value


_FLOAT64 = formats.FORMATS["float64"]
_SMALLEST = math.ldexp(1.0, -1074)


def split(value: mpmath.mpf) -> tuple[float, float]:
    """(hi, lo): hi the correctly rounded float64, lo the float64 nearest the remainder.

    A non-zero remainder below float64's subnormals becomes +-2**-1074, so lo always
    tells on which side of hi the value lies (binades and ties depend on it); hi + lo
    is then within 2**-1074 of the value, else within 2**-106 relative."""
    hi = formats.round_mpf(value, _FLOAT64)
    if not value._mpf_[1] or not math.isfinite(hi):  # zero, inf, nan, or beyond float64
        return hi, 0.0
    remainder = libmpf.mpf_sub(value._mpf_, libmpf.from_float(hi))  # exact
    lo = to_float(remainder, rnd="n")
    if lo == 0 and remainder[1]:
        lo = -_SMALLEST if remainder[0] else _SMALLEST
    return hi, lo


def round_pairs(hi: np.ndarray, lo: np.ndarray, dtype: str) -> np.ndarray:
    """Correct rounding of the values hi + lo into ``dtype``, vectorised.

    hi is rounded once into the format (scale by the format's spacing, rint with
    ties to even, scale back); where hi lies exactly on a rounding boundary of the
    format, lo decides the direction, as the exact value would.
    """
    fmt = formats.get_format(dtype)
    if fmt.precision == 53:
        return hi.copy()
    with np.errstate(all="ignore"):
        finite = np.isfinite(hi) & (hi != 0)
        binade = np.frexp(np.where(finite, hi, 1.0))[1] - 1
        k = np.clip(binade, fmt.emin, fmt.emax) - fmt.precision + 1
        scaled = np.ldexp(hi, -k)
        steps = np.rint(scaled)
        tie = np.abs(scaled - np.trunc(scaled)) == 0.5
        steps = np.where(tie & (lo > 0), np.ceil(scaled), np.where(tie & (lo < 0), np.floor(scaled), steps))
        rounded = np.ldexp(steps, k)
        rounded = np.where(np.abs(rounded) > float(fmt.max_finite), np.copysign(np.inf, hi), rounded)
    return np.where(finite, rounded, hi)


def to_arrays(refs: Sequence[RefValue], dtype: str) -> RefArrays:
    pairs = [split(r.value) for r in refs]
    hi, lo = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    return RefArrays(
        hi=hi, lo=lo, rounded=round_pairs(hi, lo, dtype),
        settled=np.array([r.settled for r in refs], dtype=bool),
        precision=np.array([r.precision for r in refs], dtype=np.int32),
    )


def _formula(inputset: InputSet) -> Callable[..., mpmath.mpf]:
    spec = registry.get(inputset.loss)
    return with_params(spec.reference, dict(inputset.params))


@dataclass(frozen=True)
class GradArrays:
    """A reference gradient, one entry per input element; ``defined`` is False where
    the loss has no derivative (ref.hi is nan there and carries no meaning)."""

    ref: RefArrays
    defined: np.ndarray


@dataclass(frozen=True)
class ChunkTask:
    """Items [start, stop) of a set's input of ``size``; ``boundaries`` are the item
    counts of the sizes being reduced (prefix ends). With ``gradient`` (a reduction),
    the chunk is of the set's reference gradient under that reduction."""

    inputset: InputSet
    size: int
    start: int
    stop: int
    boundaries: tuple[int, ...]
    gradient: str | None = None


@dataclass(frozen=True)
class ChunkResult:
    task: ChunkTask
    arrays: RefArrays
    precision: int  # the highest item precision in the chunk
    all_settled: bool
    # Exact (unrounded) sums of the items' last two levels from ``start`` up to each
    # boundary inside the chunk and up to ``stop``: (previous level, final level).
    partial_sums: dict[int, tuple[mpmath.mpf, mpmath.mpf]]


@dataclass(frozen=True)
class GradientChunk:
    """A chunk's reference gradient: for each item count n of a size holding part
    of the chunk, the gradient entries of the chunk's items below n."""

    task: ChunkTask
    by_count: dict[int, GradArrays]


def chunk_tasks(inputset: InputSet, sizes: Sequence[int], gradient: str | None = None) -> list[ChunkTask]:
    largest = max(sizes)
    count = inputset.items(largest)
    boundaries = tuple(sorted({inputset.items(s) for s in sizes}))
    return [ChunkTask(inputset, largest, a, min(a + CHUNK, count), boundaries, gradient)
            for a in range(0, count, CHUNK)]


def settle_chunk(task: ChunkTask) -> ChunkResult | GradientChunk:
    """Settle one chunk of items (runs in a worker)."""
    if task.gradient is not None:
        return _settle_gradient_chunk(task)
    inputset = task.inputset
    spec = registry.get(inputset.loss)
    arrays = regimes.generate_items(spec, inputset.dtype, inputset.regime, inputset.seed, task.start, task.stop,
                                    inputset.width)
    items = reference_items(spec, arrays)
    formula = _formula(inputset)
    settled = escalation.settle_items(formula, items, formats.get_format(inputset.dtype))
    values = [r.value for r in settled.refs]
    ends = [b for b in task.boundaries if task.start < b < task.stop] + [task.stop]
    sums = {}
    for b in ends:
        high = exact_total(values[:b - task.start])
        # Exact formulas have one level: the previous values are the values.
        sums[b] = (high if is_exact(formula) else exact_total(settled.previous[:b - task.start]), high)
    return ChunkResult(task, to_arrays(settled.refs, inputset.dtype), max(r.precision for r in settled.refs),
                       all(r.settled for r in settled.refs), sums)


def _settle_gradient_chunk(task: ChunkTask) -> GradientChunk:
    """Every item's derivative divided by each scale it needs: under 'mean' the item
    counts of the sizes holding it, under 'sum' nothing (one scale for all sizes)."""
    inputset = task.inputset
    spec = registry.get(inputset.loss)
    arrays = regimes.generate_items(spec, inputset.dtype, inputset.regime, inputset.seed, task.start, task.stop,
                                    inputset.width)
    derivative = with_params(spec.derivative, dict(inputset.params))
    holders = [[n for n in task.boundaries if n > i] for i in range(task.start, task.stop)]
    item_scales = [gradients.scales(task.gradient, counts) for counts in holders]  # type: ignore[arg-type]
    per_item = gradients.settle(derivative, reference_items(spec, arrays), item_scales, task.gradient,
                                formats.get_format(inputset.dtype))
    by_count = {}
    for n in task.boundaries:
        if n <= task.start:
            continue
        values = [v for item, counts in zip(per_item, holders) if n in counts
                  for v in item[0 if task.gradient == "sum" else counts.index(n)]]
        by_count[n] = gradient_arrays(values, inputset.dtype)
    return GradientChunk(task, by_count)


def gradient_arrays(values: Sequence[RefValue], dtype: str) -> GradArrays:
    """Reference gradient components as arrays; an undefined one becomes nan, not defined."""
    defined = np.array([v.value is not None for v in values], dtype=bool)
    refs = [v if v.value is not None else RefValue(mpmath.nan, v.settled, v.precision) for v in values]
    return GradArrays(to_arrays(refs, dtype), defined)


def assemble_gradient(sizes: Sequence[int], inputset: InputSet, chunks: Sequence[GradientChunk]) -> dict[int, GradArrays]:
    """Each size's reference gradient, concatenated from the chunks."""
    chunks = sorted(chunks, key=lambda c: c.task.start)
    result = {}
    for size in sorted(set(sizes)):
        parts = [c.by_count[inputset.items(size)] for c in chunks if inputset.items(size) in c.by_count]
        result[size] = GradArrays(
            RefArrays(*(np.concatenate([getattr(p.ref, f) for p in parts]) for f in _FIELDS)),
            np.concatenate([p.defined for p in parts]))
    return result


def assemble(inputset: InputSet, sizes: Sequence[int], chunks: Sequence[ChunkResult]) -> SetReference:
    """Concatenate chunk references and settle every size's mean and sum from the
    exact partial sums; a reduction whose two levels disagree is escalated."""
    chunks = sorted(chunks, key=lambda c: c.task.start)
    fmt = formats.get_format(inputset.dtype)
    items = RefArrays(*(np.concatenate([getattr(c.arrays, f) for c in chunks]) for f in _FIELDS))
    reduced = {}
    for size in sorted(set(sizes)):
        n = inputset.items(size)
        low, high = mpmath.mpf(0), mpmath.mpf(0)
        precision, settled = 0, True
        for c in chunks:
            if c.task.start >= n:
                break
            end = min(n, c.task.stop)
            part_low, part_high = c.partial_sums[end]
            low, high = mpmath.fadd(low, part_low, exact=True), mpmath.fadd(high, part_high, exact=True)
            precision, settled = max(precision, c.precision), settled and c.all_settled
        for reduction in REDUCED:
            ref = _settle_sum(inputset, size, n, low, high, precision, settled, reduction, fmt)
            reduced[(size, reduction)] = to_arrays([ref], inputset.dtype)
    return SetReference(items, reduced)


def _settle_sum(inputset: InputSet, size: int, n: int, low: mpmath.mpf, high: mpmath.mpf, precision: int,
                settled: bool, reduction: str, fmt: formats.BinaryFormat) -> RefValue:
    def recompute(prec: int) -> mpmath.mpf:  # only when the sum cancels
        items = reference_items(registry.get(inputset.loss), inputset.inputs(size))
        formula = _formula(inputset)
        with mpmath.workprec(prec):
            return exact_total([formula(*item) for item in items])

    return escalation.settle_totals(low, high, n, precision, settled, reduction, fmt, recompute)  # type: ignore[arg-type]


def compute(inputset: InputSet, sizes: Sequence[int]) -> SetReference:
    """The set's reference, computed in this process."""
    return assemble(inputset, sizes, [settle_chunk(t) for t in chunk_tasks(inputset, sizes)])


class ReferenceCache:
    """Set references on disk, one .npz per input set, and one per set and reduction
    for reference gradients."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, inputset: InputSet, gradient: str | None = None) -> Path:
        what = "" if gradient is None else f"-grad-{gradient}"
        return self.directory / f"{inputset.loss}-{inputset.dtype}-{inputset.regime}{what}-{inputset.key(gradient)}.npz"

    def has(self, inputset: InputSet, sizes: Sequence[int], gradient: str | None = None) -> bool:
        path = self.path(inputset, gradient)
        if not path.exists():
            return False
        with np.load(path) as data:
            return set(sizes) <= {int(s) for s in data["sizes"]}

    @staticmethod
    def read_gradient(path: Path) -> dict[int, GradArrays]:
        with np.load(path) as data:
            return {int(s): GradArrays(RefArrays(*(data[f"{s}_{f}"] for f in _FIELDS)), data[f"{s}_defined"])
                    for s in data["sizes"]}

    def save_gradient(self, inputset: InputSet, reduction: str, grads: dict[int, GradArrays]) -> None:
        data = {f"{s}_{f}": getattr(g.ref, f) for s, g in grads.items() for f in _FIELDS}
        data.update({f"{s}_defined": g.defined for s, g in grads.items()})
        self._write(self.path(inputset, reduction), sizes=np.array(sorted(grads)), **data)

    def _write(self, path: Path, **data: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(partial, **data)
        os.replace(partial, path)  # atomic: a killed run never leaves half a file

    @staticmethod
    def read(path: Path) -> SetReference:
        with np.load(path) as data:
            items = RefArrays(*(data[f"items_{f}"] for f in _FIELDS))
            reduced = {(int(s), r): RefArrays(*(data[f"{r}_{f}"][[i]] for f in _FIELDS))
                       for i, s in enumerate(data["sizes"]) for r in REDUCED}
        return SetReference(items, reduced)

    def save(self, inputset: InputSet, ref: SetReference) -> None:
        sizes = sorted({s for s, _ in ref.reduced})
        data = {f"items_{f}": getattr(ref.items, f) for f in _FIELDS}
        for r in REDUCED:
            for f in _FIELDS:
                data[f"{r}_{f}"] = np.concatenate([getattr(ref.reduced[(s, r)], f) for s in sizes])
        self._write(self.path(inputset), sizes=np.array(sizes), **data)

