"""The conventions atlas: how each framework computes each loss, found by running it.

For every loss x framework x impl it records the API really called and with which
options (captured at call time), the numeric defaults of that API the adapter left
alone (read from its signature), framework-wide settings, the dtype returned for
each requested dtype, what the mean divides by (measured as sum / mean), and the
framework's value on each edge input beside the exact value, with the deviation
classified, and, for a framework that runs both eagerly and compiled, where the
compiled loss differs from the eager one and by how many ulp (the edge inputs
item by item, and the default reduction of the typical input). Nothing here is typed in: a convention the framework changes shows up
changed in the next atlas.
"""
from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import mpmath
import numpy as np

from harness import adapters
from harness.measure import metrics, refsets, regimes
from harness.model import registry
from harness.adapters.base import Adapter, ApiCall, error_line, recording
from harness.measure.environment import FrameworkInfo
from harness.measure.deviations import (
    CLAMPED, DEVIATIONS, EPSILON, ERROR, EXACT, FROM_CLASS, INACCURATE, ROUNDING, UNSETTLED,
)
from harness.measure.evaluate import compute_reference
from harness.measure.numbers import json_number, jsonable, reference_decimal
from harness.model.spec import DTYPES, Domain, Layout, LossSpec
from reference.certify import RefValue
from reference.formats import round_mpf

ATLAS_WIDTH = 3  # classes / features per row: short rows stay readable
PROBE_SIZE = 4 * ATLAS_WIDTH  # elements of the typical input the dtype, call and mean probes run (4 rows)
EDGE_DRAWS = 96  # edge items drawn per loss, before duplicates are dropped
ROUNDING_ULPS = 4.0  # up to this, a finite deviation is rounding
DIGITS = 17  # significant digits of the exact values shown


@dataclass(frozen=True)
class EdgeProbe:
    """One edge input: the framework's value beside the exact one."""

    inputs: dict[str, Any]  # argument -> value (a list for a row), floats as JSON-safe numbers
    value: float | str | None
    reference: str | None  # decimal, None when unsettled
    deviation: str
    ulp: float | None = None
    note: str | None = None  # the clipping that explains the value, or the framework's error


@dataclass(frozen=True)
class AtlasEntry:
    loss: str
    framework: str
    framework_version: str
    impl: str
    dtype: str
    api: tuple[dict[str, Any], ...]  # recorded calls: api, passed, defaults
    composed: str | None  # the adapter's code, where no loss API is called
    settings: dict[str, Any]
    result_dtypes: dict[str, str]  # requested -> returned (or the error)
    mean_divides_by: str
    edges: tuple[EdgeProbe, ...]
    code: str  # code_version() of what made it: the same code and framework version make the same entry
    compiled: dict[str, Any] | None = None  # compiled against eager (_compiled_against_eager); None: one mode

    def counts(self) -> dict[str, int]:
        found = {d: 0 for d in DEVIATIONS}
        for probe in self.edges:
            found[probe.deviation] += 1
        return {d: n for d, n in found.items() if n}

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"deviation_counts": self.counts()}


def _exact(ref: RefValue) -> str | None:
    return reference_decimal(ref, DIGITS) if ref.settled else None


def edge_inputs(spec: LossSpec, dtype: str) -> dict[str, np.ndarray]:
    """The loss's edge-regime items (seed 0), each distinct item once, in draw order."""
    draws = regimes.generate(spec, dtype, "edge", seed=0, size=EDGE_DRAWS * (ATLAS_WIDTH if spec.layout is
                             Layout.ROWWISE else 1), width=ATLAS_WIDTH)
    keys = [tuple(np.asarray(draws[a.name][i]).tobytes() for a in spec.args) for i in range(len(draws["input"]))]
    first = sorted({key: i for i, key in reversed(list(enumerate(keys)))}.values())
    return {name: values[first] for name, values in draws.items()}


def _item(spec: LossSpec, arrays: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {a.name: arrays[a.name][i:i + 1] for a in spec.args}


@functools.lru_cache(maxsize=64)
def _edge_references(loss: str, dtype: str) -> tuple[dict[str, np.ndarray], tuple[RefValue, ...]]:
    spec = registry.get(loss)
    arrays = edge_inputs(spec, dtype)
    return arrays, tuple(compute_reference(spec, arrays, spec.resolve_params({}), "none"))


def _epsilons(adapter: Adapter, calls: Sequence[dict[str, Any]]) -> list[float]:
    """The framework's own epsilons: settings and left-alone API defaults named eps/epsilon."""
    found = [v for k, v in adapter.settings().items() if "epsilon" in k.lower() and isinstance(v, float)]
    for call in calls:
        found += [v for k, v in call["defaults"] if "eps" in k.lower() and isinstance(v, float)]
    return sorted(set(found))


def _explained_by_epsilon(spec: LossSpec, item: dict[str, np.ndarray], value: float, dtype: str,
                          compute_dtype: str, epsilons: Sequence[float]) -> str | None:
    """How one of the framework's epsilons explains the value, if one does: the value
    is the exact loss of the item with probabilities clipped to [eps, 1 - eps], or
    with eps added to a positive argument, or with that argument floored at eps
    (eps and 1 - eps rounded to the dtype the framework computed in). Every
    explanation that fits is named: tiny inputs cannot tell eps + x from max(x, eps)."""
    if not math.isfinite(value) or compute_dtype not in DTYPES:
        return None
    probabilities = [a.name for a in spec.args if a.domain in (Domain.PROBABILITY, Domain.DISTRIBUTION)]
    positives = [a.name for a in spec.args if a.domain in (Domain.POSITIVE, Domain.NONNEGATIVE)]
    for eps in epsilons:
        low, high = regimes.in_dtype(np.array([eps, 1 - eps]), compute_dtype)
        candidates = []
        if probabilities:
            candidates.append((f"probabilities clipped to [{eps:g}, 1 - {eps:g}]",
                               {n: np.clip(v, low, high) if n in probabilities else v for n, v in item.items()}))
        for name in positives:
            candidates.append((f"{eps:g} added to {name}", item | {name: regimes.in_dtype(item[name] + low, compute_dtype)}))
            candidates.append((f"{name} floored at {eps:g}", item | {name: np.maximum(item[name], low)}))
        fits = [note for note, moved in candidates
                if not all(np.array_equal(moved[n], item[n], equal_nan=True) for n in item)
                and _matches(spec, moved, value, dtype)]
        if fits:
            return " or ".join(fits)
    return None


def _matches(spec: LossSpec, arrays: dict[str, np.ndarray], value: float, dtype: str) -> bool:
    ref = compute_reference(spec, arrays, spec.resolve_params({}), "none")[0]
    return bool(ref.settled and mpmath.isfinite(ref.value) and metrics.ulp_error(value, ref.value, dtype) <= ROUNDING_ULPS)


def _deviation(value: float, ref: RefValue, dtype: str) -> tuple[str, float | None]:
    if not ref.settled:
        return UNSETTLED, None
    nonfinite = metrics.classify(value, ref.value, dtype)
    if nonfinite is not None:
        return FROM_CLASS[nonfinite], None
    ulp = metrics.ulp_error(value, ref.value, dtype)
    if value == round_mpf(ref.value, dtype):
        return EXACT, ulp
    return (ROUNDING if ulp <= ROUNDING_ULPS else INACCURATE), ulp


def _probe(adapter: Adapter, spec: LossSpec, impl: str, dtype: str, epsilons: list[float]) -> tuple[EdgeProbe, ...]:
    arrays, refs = _edge_references(spec.name, dtype)
    params = spec.resolve_params({})
    probes = []
    for i, ref in enumerate(refs):
        item = _item(spec, arrays, i)
        inputs = {name: jsonable(values)[0] for name, values in item.items()}
        try:
            output = adapter.run(spec, impl, item, dtype, "cpu", spec.default_reduction, params)
            value = float(output.values[0])
        except Exception as exc:  # the framework refusing an input is a convention too
            probes.append(EdgeProbe(inputs, None, _exact(ref), ERROR, note=error_line(exc)[:200]))
            continue
        deviation, ulp = _deviation(value, ref, dtype)
        note = None
        if deviation in (INACCURATE, CLAMPED) and epsilons:
            note = _explained_by_epsilon(spec, item, value, dtype, output.result_dtype, epsilons)
            deviation = EPSILON if note else deviation
        probes.append(EdgeProbe(inputs, json_number(value), _exact(ref), deviation, ulp, note))
    return tuple(probes)


# Differing items listed in an entry, beyond the counts.
COMPILED_EXAMPLES = 5


def _compiled_against_eager(adapter: Adapter, spec: LossSpec, impl: str, dtype: str) -> dict[str, Any]:
    """Where the compiled loss differs from the eager one: per item on the edge
    inputs (reduction none) and on the default reduction of the typical input;
    ulp in the dtype at the eager value, None where either is not finite."""
    params = spec.resolve_params({})
    arrays, _ = _edge_references(spec.name, dtype)
    typical = _typical(spec, dtype)
    try:
        values = {mode: (adapter.run(spec, impl, arrays, dtype, "cpu", "none", params, mode=mode).values,
                         adapter.run(spec, impl, typical, dtype, "cpu", spec.default_reduction, params,
                                     mode=mode).values)
                  for mode in ("eager", "compiled")}
    except Exception as exc:  # compiling or running it compiled failed: that is what the atlas says
        return {"error": error_line(exc)[:200]}
    (eager, eager_reduced), (compiled, compiled_reduced) = values["eager"], values["compiled"]
    same = (eager == compiled) | (np.isnan(eager) & np.isnan(compiled))
    ulps = metrics.ulp_errors(compiled, eager, np.zeros_like(eager), dtype)
    differ = np.flatnonzero(~same)
    examples = [{"inputs": {name: jsonable(values)[0] for name, values in _item(spec, arrays, int(i)).items()},
                 "eager": json_number(float(eager[i])), "compiled": json_number(float(compiled[i])),
                 "ulp": None if np.isnan(ulps[i]) else float(ulps[i])}
                for i in sorted(differ, key=lambda i: -np.nan_to_num(ulps[i], nan=np.inf))[:COMPILED_EXAMPLES]]
    finite = ulps[differ][~np.isnan(ulps[differ])]
    reduced_ulp = metrics.ulp_errors(compiled_reduced, eager_reduced, np.zeros_like(eager_reduced), dtype)[0]
    return {"items": int(eager.size), "differ": int(differ.size),
            "max_ulp": float(finite.max()) if finite.size else None,
            "nonfinite_differ": int(differ.size - finite.size), "examples": examples,
            "reduced": {"eager": json_number(float(eager_reduced[0])),
                        "compiled": json_number(float(compiled_reduced[0])),
                        "ulp": None if np.isnan(reduced_ulp) else float(reduced_ulp)}}


def _typical(spec: LossSpec, dtype: str) -> dict[str, np.ndarray]:
    return regimes.typical(spec, dtype, PROBE_SIZE, seed=1, width=ATLAS_WIDTH)


def _run_each_dtype(adapter: Adapter, spec: LossSpec, impl: str) -> tuple[dict[str, str], tuple[ApiCall, ...]]:
    """The dtype returned for each requested dtype, and the distinct API calls made
    (an adapter may call differently per dtype: Keras gets dtype='float64')."""
    found = {}
    with recording() as calls:
        for dtype in DTYPES:
            try:
                found[dtype] = adapter.run(spec, impl, _typical(spec, dtype), dtype, "cpu", spec.default_reduction,
                                           spec.resolve_params({})).result_dtype
            except Exception as exc:  # what was called before the failure is still what was called
                found[dtype] = f"error: {type(exc).__name__}"
    return found, tuple(dict.fromkeys(calls))


def _mean_divisor(adapter: Adapter, spec: LossSpec, impl: str) -> str:
    """sum / mean on a typical float64 input, named when it is a count of the input."""
    arrays = _typical(spec, "float64")
    params = spec.resolve_params({})
    try:
        total = float(adapter.run(spec, impl, arrays, "float64", "cpu", "sum", params).values[0])
        mean = float(adapter.run(spec, impl, arrays, "float64", "cpu", "mean", params).values[0])
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    ratio = total / mean
    items, elements = len(arrays["input"]), arrays["input"].size
    names = {items: f"the number of {'rows' if spec.layout is Layout.ROWWISE else 'elements'} ({items})",
             elements: f"the number of elements ({elements})"}
    for count, name in names.items():
        if math.isclose(ratio, count, rel_tol=1e-9):
            return name
    return f"{ratio:.6g} (neither the rows nor the elements)"


def _as_json(call: ApiCall) -> dict[str, Any]:
    return {"api": call.api, "passed": [[k, _plain(v)] for k, v in call.passed],
            "defaults": [[k, _plain(v)] for k, v in call.defaults]}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


def _source(function: Any) -> str:
    """The adapter code behind a composed impl (its own lines, or its lambda's)."""
    try:
        lines = inspect.getsource(inspect.unwrap(function)).strip().splitlines()
    except (OSError, TypeError):
        return getattr(function, "__qualname__", repr(function))
    return "\n".join(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))


def entry(framework: str, loss: str, impl: str, dtype: str) -> AtlasEntry:
    adapter = adapters.load(framework)
    spec = registry.get(loss)
    result_dtypes, recorded = _run_each_dtype(adapter, spec, impl)
    calls = tuple(_as_json(c) for c in recorded)
    composed = None if calls else _source(adapter.impls[impl][spec.name])
    both = adapter.modes[0] == "eager" and "compiled" in adapter.modes
    return AtlasEntry(
        loss, framework, adapter.version(), impl, dtype, calls, composed, adapter.settings(),
        result_dtypes, _mean_divisor(adapter, spec, impl),
        _probe(adapter, spec, impl, dtype, _epsilons(adapter, calls)), code_version(),
        _compiled_against_eager(adapter, spec, impl, dtype) if both else None,
    )


def entry_json(item: tuple[str, str, str, str]) -> dict[str, Any]:
    """entry(framework, loss, impl, dtype) as stored (runs in a worker)."""
    return entry(*item).to_json()


@functools.cache
def code_version() -> str:
    """A hash of the code an atlas entry comes from: this module, the adapters, the
    inputs and metrics it uses, and the reference."""
    root = Path(__file__).resolve().parents[2]
    files = sorted(str(p.relative_to(root)) for folder in ("harness/adapters", "reference")
                   for p in (root / folder).rglob("*.py"))
    files += [f"harness/measure/{name}.py" for name in ("atlas", "deviations", "evaluate", "metrics", "regimes",
                                                         "items", "numbers")]
    return refsets.code_version(tuple(files))


def is_current(stored: dict[str, Any] | None, framework_version: str) -> bool:
    """Whether a stored entry (AtlasEntry.to_json()) is what entry() would make now."""
    return stored is not None and stored.get("code") == code_version() \
        and stored.get("framework_version") == framework_version


def plan(losses: Sequence[str], frameworks: Mapping[str, FrameworkInfo]) -> Iterator[tuple[str, str, str]]:
    """(framework, loss, impl) for every impl the available frameworks declare (as a
    worker found them: planning imports no framework)."""
    for loss in losses:
        for framework, found in frameworks.items():
            if found.available:
                for impl in found.impls.get(loss, ()):
                    yield framework, loss, impl
