"""One case, end to end: exact reference, framework call, metrics.

The reference is computed first and independently of the framework, so a
framework that raises still leaves an honest record (its error, beside the
reference it should have matched).
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

import numpy as np

from harness import adapters
from harness.measure import metrics
from harness.model import registry
from harness.adapters.base import Output, error_line
from harness.measure.numbers import jsonable
from reference.formats import round_pairs
from harness.measure.items import reference_items, with_params
from harness.model.spec import Case, LossSpec, Result
from reference import certify, gradients
from reference.arith import DEFAULT_ENGINE, engine
from reference.certify import RefValue


def compute_reference(
    spec: LossSpec, arrays: Mapping[str, np.ndarray], params: Mapping[str, float], reduction: str,
    engine_name: str = DEFAULT_ENGINE, start_prec: int = certify.START_PREC, max_prec: int = certify.MAX_PREC,
) -> list[RefValue]:
    """The settled reference: one value per item for 'none', else a single value."""
    formula = with_params(spec.reference, params)
    value = certify.evaluate(formula, reference_items(spec, arrays), reduction,  # type: ignore[arg-type]
                             engine(engine_name), start_prec, max_prec)
    return value if isinstance(value, list) else [value]


def _rounded(ref: RefValue, dtype: str) -> float | None:
    """The reference correctly rounded into ``dtype``, from its stored pair as the
    sweep's references are (refsets.round_pairs)."""
    if ref.value is None:
        return None
    hi, lo = ref.pair
    return float(round_pairs(np.array([hi]), np.array([lo]), dtype)[0])


def evaluate(case: Case, arrays: Mapping[str, np.ndarray], engine_name: str = DEFAULT_ENGINE,
             threads: int | None = None) -> Result:
    """Evaluate ``case`` on validated ``arrays`` (see harness.measure.inputs.prepare),
    with ``threads`` of the framework's threads (None: its own count)."""
    spec = registry.get(case.loss)
    params = dict(case.params)
    refs = compute_reference(spec, arrays, params, case.reduction, engine_name)
    rounded = tuple(_rounded(r, case.dtype) for r in refs)
    adapter = adapters.load(case.framework)
    try:
        with adapter.threads(threads):
            output = adapter.run(spec, case.impl, arrays, case.dtype, case.device, case.reduction, params,
                                 mode=case.mode)
    except Exception as exc:  # a framework failure is a result, not a crash
        return Result(case, (), None, tuple(refs), rounded, (), (), (), error=error_line(exc))
    return _measured(case, output, refs, rounded)


def evaluate_gradient(case: Case, arrays: Mapping[str, np.ndarray], engine_name: str = DEFAULT_ENGINE,
                      threads: int | None = None) -> Result:
    """The gradient of ``case``'s reduced loss with respect to input, one value per
    input element, against the reference derivative. Elements where the loss has no
    derivative (reference value None) carry no metrics."""
    spec = registry.get(case.loss)
    derivative = with_params(spec.derivative, dict(case.params))
    refs = gradients.evaluate(derivative, reference_items(spec, arrays), case.reduction, engine(engine_name))
    rounded = tuple(_rounded(r, case.dtype) for r in refs)
    adapter = adapters.load(case.framework)
    try:
        with adapter.threads(threads):
            output = adapter.run(spec, case.impl, arrays, case.dtype, case.device, case.reduction, dict(case.params),
                                 gradient=True, mode=case.mode)
    except Exception as exc:  # no gradient, or the framework raised: a result, not a crash
        return Result(case, (), None, tuple(refs), rounded, (), (), (), error=error_line(exc))
    return _measured(case, output, refs, rounded)


def _measured(case: Case, output: Output, refs: Sequence[RefValue], rounded: tuple[float | None, ...]) -> Result:
    values = tuple(float(v) for v in output.values)
    if len(values) != len(refs):
        error = f"framework returned {len(values)} values, the reference has {len(refs)}"
        return Result(case, values, output.result_dtype, tuple(refs), rounded, (), (), (), error=error)
    ulps, rels, classes = [], [], []
    for value, ref in zip(values, refs):
        cls = None if ref.value is None else metrics.classify(value, ref.value, case.dtype)
        honest = cls is None and ref.settled and ref.value is not None
        classes.append(cls)
        ulps.append(metrics.ulp_error(value, ref.value, case.dtype) if honest else None)
        rels.append(metrics.relative_error(value, ref.value) if honest else None)
    return Result(case, values, output.result_dtype, tuple(refs), rounded, tuple(ulps), tuple(rels), tuple(classes))


def repro_command(case: Case, arrays: Mapping[str, np.ndarray]) -> str:
    """A shell command that re-runs this case through the CLI."""
    spec = registry.get(case.loss)
    parts = ["lossbench", "eval", case.loss, "--framework", case.framework, "--impl", case.impl,
             "--dtype", case.dtype, "--device", case.device, "--mode", case.mode, "--reduction", case.reduction]
    for name, value in case.params:
        parts += ["--param", f"{name}={value!r}"]
    for a in spec.args:
        data = json.dumps(jsonable(arrays[a.name]))
        if a.name in ("input", "target"):
            parts += [f"--{a.name}", data]
        else:
            parts += ["--arg", f"{a.name}={data}"]
    return shlex.join(parts + ["--json"])
