"""What a reference set holds and a cell measures: the loss value, or its
gradient with respect to input under one reduction. Each quantity owns its
formula, how a chunk of items is settled and the chunks assembled, how its
reference is written to and read from the cache, and its cache file name and
key, so nothing else branches on which one it is. (Its rows are the store's:
CellRow and GradientRow name their tables, a layer above this one.)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.measure import regimes
from harness.measure.items import reference_items, with_params
from harness.measure.refsets import FIELDS, ChunkTask, GradArrays, InputSet, RefArrays, chunk_tasks, \
    gradient_arrays, to_arrays
from harness.model import registry
from harness.model.spec import Layout, LossSpec
from reference import certify, formats, gradients, prepass, vectorized
from reference.formats import round_pairs
from reference.arith import DEFAULT_ENGINE, engine
from reference.certify import Totals

REDUCED = ("mean", "sum")
# The code a cached value reference depends on: formulas, arithmetic, settlement, rounding, inputs, items.
_VALUE_CODE = ("reference/formulas.py", "reference/mpexact.py", "reference/arith.py", "reference/certify.py",
               "reference/formats.py", "reference/exact.py", "reference/vectorized.py", "reference/prepass.py", "harness/model/dtypes.py",
               "harness/measure/regimes.py",
               "harness/measure/items.py", "harness/measure/refsets.py", "harness/measure/quantity.py")


class Quantity(ABC):
    """The interface both quantities share (see the module docstring). ``engine``
    names the arithmetic that computes the reference (reference.arith.ENGINES):
    both store the same numbers, and each keeps its own cache entries."""

    label: ClassVar[str]  # what its reference is called in messages
    code_files: ClassVar[tuple[str, ...]]
    engine: str

    @abstractmethod
    def key_parts(self) -> list[Any]: ...

    @property
    @abstractmethod
    def file_tag(self) -> str: ...

    @property
    def engine_tag(self) -> str:
        return "" if self.engine == DEFAULT_ENGINE else f"-{self.engine}"

    @abstractmethod
    def settle(self, task: ChunkTask) -> Any:
        """One chunk of items settled (runs in a worker)."""

    @abstractmethod
    def assemble(self, inputset: InputSet, sizes: Sequence[int], chunks: Sequence[Any]) -> Any:
        """The set's reference for ``sizes`` from all of its chunks."""

    @abstractmethod
    def encode(self, reference: Any) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def decode(self, data: Any) -> Any: ...

    def compute(self, inputset: InputSet, sizes: Sequence[int]) -> Any:
        """The set's reference, computed in this process."""
        return self.assemble(inputset, sizes, [self.settle(t) for t in chunk_tasks(inputset, sizes, self)])


@dataclass(frozen=True)
class ValueChunk:
    task: ChunkTask
    arrays: RefArrays
    # Up to each boundary inside the chunk and up to ``stop``: the highest item
    # precision, whether every item settled (an unsettled item after a size's end
    # does not unsettle that size's reduction), and whether the pre-pass settled any.
    heads: dict[int, tuple[int, bool, bool]]
    # The totals (reference.certify.totals) of the items from ``start`` up to each
    # boundary inside the chunk and up to ``stop``.
    partial_sums: dict[int, Totals]


@dataclass(frozen=True)
class ValueReference:
    items: RefArrays
    reduced: dict[tuple[int, str], RefArrays]  # (size, reduction) -> one value


@dataclass(frozen=True)
class LossValue(Quantity):
    """The loss per item, and each size's mean and sum from exact partial sums."""

    engine: str = DEFAULT_ENGINE
    label: ClassVar[str] = "reference"
    code_files: ClassVar[tuple[str, ...]] = _VALUE_CODE

    def key_parts(self) -> list[Any]:
        return [self.engine]

    @property
    def file_tag(self) -> str:
        return self.engine_tag

    def settle(self, task: ChunkTask) -> ValueChunk:
        """The chunk's items: a rational element-wise loss's exact in float64 where its
        error-free evaluation holds (reference.vectorized), a narrower dtype's from the
        float64 pre-pass where that proves their rounding (reference.prepass; neither
        for the mpmath engine, which computes everything itself), the others certified
        one by one."""
        s = task.inputset
        spec = registry.get(s.loss)
        arrays = regimes.generate_items(spec, s.dtype, s.regime, s.seed, task.start, task.stop, s.width)
        count = task.stop - task.start
        fast = _vectorized(s, spec, arrays) if self.engine == DEFAULT_ENGINE else None
        if fast is None:
            fast = _Vectorized.none(count)
        hi, ok = fast.hi, fast.ok
        rest = np.flatnonzero(~ok)
        formula = with_params(spec.reference, dict(s.params))
        refs = certify.settle_items(formula, reference_items(spec, {k: v[rest] for k, v in arrays.items()}),
                                    engine(self.engine)) if len(rest) else []
        items = RefArrays(hi.copy(), np.where(ok, fast.lo, 0.0), np.zeros(count), ok.copy(),
                          np.where(ok, fast.precision, 0).astype(np.int32))
        if refs:
            certified = to_arrays(refs, s.dtype)
            for field in ("hi", "lo", "settled", "precision"):
                getattr(items, field)[rest] = getattr(certified, field)
        items.rounded[:] = round_pairs(items.hi, items.lo, s.dtype)
        sums, heads = {}, {}
        for end in [b for b in task.boundaries if task.start < b < task.stop] + [task.stop]:
            certified_inside = rest < end - task.start
            sums[end] = certify.add_totals([fast.totals(end - task.start),
                                            certify.totals([r for r, i in zip(refs, certified_inside) if i])])
            heads[end] = (int(items.precision[:end - task.start].max()), bool(items.settled[:end - task.start].all()),
                          bool((items.precision[:end - task.start] == certify.PREPASS_PRECISION).any()))
        return ValueChunk(task, items, heads, sums)

    def assemble(self, inputset: InputSet, sizes: Sequence[int], chunks: Sequence[ValueChunk]) -> ValueReference:
        """Chunk references concatenated, every size's mean and sum settled from the
        exact partial sums; a reduction whose enclosure is too wide is escalated."""
        chunks = sorted(chunks, key=lambda c: c.task.start)
        reduced = {}
        for size in sorted(set(sizes)):
            n = inputset.items(size)
            parts = []
            precision, settled, prepassed = 0, True, False
            for c in chunks:
                if c.task.start >= n:
                    break
                end = min(n, c.task.stop)
                parts.append(c.partial_sums[end])
                head_precision, head_settled, head_prepassed = c.heads[end]
                precision, settled = max(precision, head_precision), settled and head_settled
                prepassed = prepassed or head_prepassed

            def recompute(prec: int, size: int = size) -> Totals:  # only when the sum cancels
                spec = registry.get(inputset.loss)
                formula = with_params(spec.reference, dict(inputset.params))
                items = reference_items(spec, inputset.inputs(size))
                return certify.totals(certify.settle_items(formula, items, engine(self.engine), prec, prec))

            for reduction in REDUCED:
                ref = certify.settle_totals(certify.add_totals(parts), n, precision, settled, reduction,
                                            recompute,  # type: ignore[arg-type]
                                            rounding_only=formats.get_format(inputset.dtype) if prepassed else None)
                reduced[(size, reduction)] = to_arrays([ref], inputset.dtype)
        return ValueReference(RefArrays.concatenate([c.arrays for c in chunks]), reduced)

    def encode(self, reference: ValueReference) -> dict[str, np.ndarray]:
        sizes = sorted({s for s, _ in reference.reduced})
        data = {f"items_{f}": getattr(reference.items, f) for f in FIELDS}
        for r in REDUCED:
            for f in FIELDS:
                data[f"{r}_{f}"] = np.concatenate([getattr(reference.reduced[(s, r)], f) for s in sizes])
        return {"sizes": np.array(sizes), **data}

    def decode(self, data: Any) -> ValueReference:
        items = RefArrays(*(data[f"items_{f}"] for f in FIELDS))
        reduced = {(int(s), r): RefArrays(*(data[f"{r}_{f}"][[i]] for f in FIELDS))
                   for i, s in enumerate(data["sizes"]) for r in REDUCED}
        return ValueReference(items, reduced)


@dataclass(frozen=True)
class GradientChunk:
    """A chunk's reference gradient: for each item count n of a size holding part
    of the chunk, the gradient entries of the chunk's items below n."""

    task: ChunkTask
    by_count: dict[int, GradArrays]


@dataclass(frozen=True)
class LossGradient(Quantity):
    """d(reduced loss)/d(input) under ``reduction``, per size: under 'mean' the
    items' shared derivatives are divided by each size's item count."""

    reduction: str
    engine: str = DEFAULT_ENGINE
    label: ClassVar[str] = "reference gradient"
    code_files: ClassVar[tuple[str, ...]] = (*_VALUE_CODE, "reference/derivatives.py", "reference/gradients.py")

    def key_parts(self) -> list[Any]:
        return [self.reduction, self.engine]

    @property
    def file_tag(self) -> str:
        return f"-grad-{self.reduction}{self.engine_tag}"

    def settle(self, task: ChunkTask) -> GradientChunk:
        """Every item's derivative divided by each scale it needs: under 'mean' the item
        counts of the sizes holding it, under 'sum' nothing (one scale for all sizes).
        A narrower dtype's items come from the float64 pre-pass where it proves the
        rounding of every scaled component (reference.prepass; not for the mpmath
        engine), the others are certified one by one."""
        s = task.inputset
        spec = registry.get(s.loss)
        arrays = regimes.generate_items(spec, s.dtype, s.regime, s.seed, task.start, task.stop, s.width)
        items = reference_items(spec, arrays)
        count = task.stop - task.start
        held = {n: min(n, task.stop) - task.start for n in task.boundaries if n > task.start}  # items each size holds
        scales = {n: (n if self.reduction == "mean" else 1) for n in held}
        fast = _prepassed_gradient(s, spec, arrays, held, scales) if self.engine == DEFAULT_ENGINE else None
        ok = fast[0] if fast is not None else np.zeros(count, dtype=bool)
        rest = np.flatnonzero(~ok)
        holders = [[n for n in task.boundaries if n > task.start + i] for i in rest]
        item_scales = [gradients.scales(self.reduction, counts) for counts in holders]  # type: ignore[arg-type]
        derivative = with_params(spec.derivative, dict(s.params))
        per_item = gradients.settle(derivative, [items[i] for i in rest], item_scales, engine(self.engine))
        by_count = {}
        for n, held_items in held.items():
            values = [v for item, counts in zip(per_item, holders) if n in counts
                      for v in item[0 if self.reduction == "sum" else counts.index(n)]]
            balls = gradient_arrays(values, s.dtype)
            if fast is None:
                by_count[n] = balls
                continue
            by_count[n] = _merged(fast[1][n][:held_items], ok[:held_items], balls, s.dtype)
        return GradientChunk(task, by_count)

    def assemble(self, inputset: InputSet, sizes: Sequence[int],
                 chunks: Sequence[GradientChunk]) -> dict[int, GradArrays]:
        """Each size's reference gradient, concatenated from the chunks."""
        chunks = sorted(chunks, key=lambda c: c.task.start)
        result = {}
        for size in sorted(set(sizes)):
            n = inputset.items(size)
            parts = [c.by_count[n] for c in chunks if n in c.by_count]
            result[size] = GradArrays(RefArrays.concatenate([p.ref for p in parts]),
                                      np.concatenate([p.defined for p in parts]))
        return result

    def encode(self, reference: dict[int, GradArrays]) -> dict[str, np.ndarray]:
        data = {f"{s}_{f}": getattr(g.ref, f) for s, g in reference.items() for f in FIELDS}
        data.update({f"{s}_defined": g.defined for s, g in reference.items()})
        return {"sizes": np.array(sorted(reference)), **data}

    def decode(self, data: Any) -> dict[int, GradArrays]:
        return {int(s): GradArrays(RefArrays(*(data[f"{s}_{f}"] for f in FIELDS)), data[f"{s}_defined"])
                for s in data["sizes"]}


@dataclass(frozen=True)
class _Vectorized:
    """Items settled over whole arrays: each item's pair (hi, lo) and the ends of its
    enclosure (both hi + lo where the value is exact), and whether it settled."""

    hi: np.ndarray
    lo: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    ok: np.ndarray
    precision: int

    @classmethod
    def none(cls, count: int) -> _Vectorized:
        zeros = np.zeros(count)
        return cls(zeros, zeros, zeros, zeros, np.zeros(count, dtype=bool), 0)

    def totals(self, count: int) -> Totals:
        """The exact sums of the lower and upper ends of the settled items among the first ``count``."""
        taken = np.flatnonzero(self.ok[:count])
        if self.precision == 0:  # exact items: hi + lo is the value
            return certify.float_totals(self.hi[taken], self.lo[taken])
        nothing = np.zeros(0)
        return (certify.float_totals(self.lower[taken], nothing)[0],
                certify.float_totals(self.upper[taken], nothing)[0], None)


def _holds_none(lower: np.ndarray, upper: np.ndarray, dtype: str) -> np.ndarray:
    """Whether [lower, upper] holds no number of ``dtype``: a result in that dtype (or
    one upcast to float32) then never measures a zero error where the exact value
    is not that number."""
    zeros = np.zeros(lower.shape)
    below, above = round_pairs(lower, zeros, dtype), round_pairs(upper, zeros, dtype)
    return (below == above) & ((below < lower) | (below > upper))


def _vectorized(s: InputSet, spec: LossSpec, arrays: dict[str, np.ndarray]) -> _Vectorized | None:
    """The items a whole-array evaluation settles, or None where the loss has none."""
    inputs = [arrays[a.name] for a in spec.args]
    exact = vectorized.EXACT.get(s.loss)
    if exact is not None and spec.layout is Layout.ELEMENTWISE:
        hi, lo, ok = exact(*inputs, **dict(s.params))
        return _Vectorized(hi, lo, hi, hi, ok, 0)
    bounded = prepass.FORMULAS.get(s.loss)
    if bounded is None or s.dtype == "float64" or not prepass.libm_checked():
        return None
    with np.errstate(all="ignore"):
        result = bounded(*inputs, **dict(s.params))
        lower, upper = prepass.enclosure(result)
        ok = _rounding_determined(lower, upper, s.dtype)
    zeros = np.zeros(len(lower))
    return _Vectorized(np.where(ok, result.v, 0.0), zeros, lower, upper, ok, certify.PREPASS_PRECISION)


def _rounding_determined(lower: np.ndarray, upper: np.ndarray, dtype: str) -> np.ndarray:
    """reference.certify.rounding_determined over arrays of float64 ends: one binade
    and one rounding into ``dtype``, no number of it or of float32 inside, and narrow
    enough that any point measures errors as the exact value would."""
    zeros = np.zeros(lower.shape)
    rounded = round_pairs(lower, zeros, dtype)
    binade = np.frexp(lower)[1] - 1
    width = upper - lower  # rounded up: an overestimate is safe here
    spacing = np.ldexp(1.0, formats.get_format(dtype).ulp_exponents(binade) - certify.SPACING_BITS)
    return (np.isfinite(lower) & np.isfinite(upper) & (lower != 0) & (np.sign(lower) == np.sign(upper))
            & (np.frexp(upper)[1] - 1 == binade)  # one binade: the ulp is known
            & (rounded == round_pairs(upper, zeros, dtype))
            & _holds_none(lower, upper, dtype) & _holds_none(lower, upper, "float32")
            & (np.isinf(rounded) | (np.nextafter(width, np.inf) <= spacing))  # past the range: relative only
            & (np.nextafter(width, np.inf) <= np.ldexp(np.abs(lower), -certify.RELATIVE_BITS)))


def _prepassed_gradient(s: InputSet, spec: LossSpec, arrays: dict[str, np.ndarray], held: dict[int, int],
                        scales: dict[int, int]) -> tuple[np.ndarray, dict[int, np.ndarray]] | None:
    """(which items the pre-pass settles, each size's components (items, width) of
    them), or None where it has no derivative for the loss or the dtype: an item
    settles when every component of every scale it is divided by does."""
    bounded = prepass.DERIVATIVES.get(s.loss)
    if bounded is None or s.dtype == "float64" or not prepass.libm_checked():
        return None
    with np.errstate(all="ignore"):
        derivative = bounded(*(arrays[a.name] for a in spec.args), **dict(s.params))
        count = len(derivative.v)
        derivative = prepass.Bounded(derivative.v.reshape(count, -1), derivative.e.reshape(count, -1))
        ok = np.ones(count, dtype=bool)
        values = {}
        for n, held_items in held.items():
            scaled = derivative / prepass.exact(float(scales[n])) if scales[n] != 1 else derivative
            lower, upper = prepass.enclosure(scaled)
            ok[:held_items] &= _rounding_determined(lower, upper, s.dtype).all(axis=1)[:held_items]
            values[n] = scaled.v
    return ok, values


def _merged(prepassed: np.ndarray, ok: np.ndarray, balls: GradArrays, dtype: str) -> GradArrays:
    """One size's components: the pre-passed items' (precision 53, as the values') and
    the balls' for the rest, in item order."""
    width = prepassed.shape[1]
    rows = np.repeat(ok, width)
    hi, lo = np.zeros(rows.size), np.zeros(rows.size)
    settled, defined = np.ones(rows.size, dtype=bool), np.ones(rows.size, dtype=bool)
    precision = np.full(rows.size, certify.PREPASS_PRECISION, dtype=np.int32)
    hi[rows] = prepassed[ok].reshape(-1)
    for target, source in ((hi, balls.ref.hi), (lo, balls.ref.lo), (settled, balls.ref.settled),
                           (precision, balls.ref.precision), (defined, balls.defined)):
        target[~rows] = source
    return GradArrays(RefArrays(hi, lo, round_pairs(hi, lo, dtype), settled, precision), defined)


VALUE = LossValue()


def gradient_of(loss: str, engine_name: str = DEFAULT_ENGINE) -> LossGradient:
    """The gradient a sweep's cells of ``loss`` measure: that of its default reduction."""
    return LossGradient(registry.get(loss).default_reduction, engine_name)
