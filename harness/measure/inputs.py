"""User-given values -> validated arrays in the requested dtype.

Numbers are parsed as exact decimals and rounded once, to nearest-even, into the
dtype (parsing to float64 first and casting would round twice), then checked
against the loss's argument domains and shapes. Every problem raises
``InputError`` with a one-line message naming it.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import numpy as np

from harness.model.spec import Domain, Layout, LossSpec
from reference.formats import get_format, round_rational

_NONFINITE_WORDS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan,
                    "infinity": math.inf, "-infinity": -math.inf}


class InputError(ValueError):
    pass


def _exact_decimal(text: str) -> Fraction | float:
    """The decimal's exact value; -0.0 stays a float so its sign survives."""
    value = Fraction(text)
    return -0.0 if value == 0 and text.lstrip().startswith("-") else value


def parse_json(text: str, what: str) -> Any:
    """JSON with numbers kept exact; 'inf', '-inf', 'nan' strings (and Infinity/NaN) allowed."""
    try:
        return json.loads(text, parse_float=_exact_decimal, parse_constant=lambda c: _NONFINITE_WORDS[c.lower()])
    except (json.JSONDecodeError, KeyError) as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None


def _leaf(value: Any, what: str) -> Fraction | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, str)):
        raise InputError(f"{what} must hold numbers, got {json.dumps(value) if not isinstance(value, Fraction) else value}")
    if isinstance(value, str):
        try:
            return _NONFINITE_WORDS[value.strip().lower()]
        except KeyError:
            raise InputError(f"{what} must hold numbers, got the string {value!r}") from None
    return value if isinstance(value, float) else Fraction(value)


def _nested(value: Any, what: str) -> tuple[list[Any], tuple[int, ...]]:
    """Flatten a (possibly nested) list, checking it is rectangular."""
    if not isinstance(value, list):
        return [_leaf(value, what)], ()
    if not value:
        raise InputError(f"{what} is empty")
    parts = [_nested(v, what) for v in value]
    shapes = {shape for _, shape in parts}
    if len(shapes) != 1:
        raise InputError(f"{what} is a ragged nested list (rows of different shapes)")
    return [leaf for flat, _ in parts for leaf in flat], (len(value), *shapes.pop())


def round_values(value: Any, dtype: str, what: str) -> np.ndarray:
    """A float64 array holding the dtype-rounded values (exactly representable in dtype)."""
    flat, shape = _nested(value, what)
    fmt = get_format(dtype)
    rounded = [v if isinstance(v, float) else round_rational(v, fmt) for v in flat]
    return np.array(rounded, dtype=np.float64).reshape(shape or (1,))


def class_indices(value: Any, what: str) -> np.ndarray:
    flat, shape = _nested(value, what)
    if not all(isinstance(v, Fraction) and v.denominator == 1 for v in flat):
        raise InputError(f"{what} must be integer class indices")
    return np.array([int(v) for v in flat], dtype=np.int64).reshape(shape or (1,))


def _check_domain(spec: LossSpec, name: str, domain: Domain, values: np.ndarray) -> None:
    flat = values.ravel()
    if domain in (Domain.PROBABILITY, Domain.DISTRIBUTION):
        bad = ~((flat >= 0) & (flat <= 1)) & ~np.isnan(flat)
        allowed = "probabilities in [0, 1]"
    elif domain is Domain.NONNEGATIVE:
        bad = flat < 0
        allowed = "values >= 0"
    elif domain is Domain.POSITIVE:
        bad = flat <= 0
        allowed = "values > 0"
    elif domain is Domain.SIGN_LABEL:
        bad = ~np.isin(flat, (-1.0, 1.0))
        allowed = "labels in {-1, +1}"
    elif domain is Domain.BINARY_LABEL:
        bad = ~np.isin(flat, (0.0, 1.0))
        allowed = "labels in {0, 1}"
    else:
        return
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{spec.name}: {name} must be {allowed}; got {flat[i]!r} at position {i}")


def prepare(spec: LossSpec, raw: dict[str, Any], dtype: str) -> dict[str, np.ndarray]:
    """Validated arrays for every argument of ``spec``: floats rounded into ``dtype``
    (held as float64), class indices as int64. Row-wise inputs must be [B, C]; a
    single row [C] is taken as B = 1."""
    missing = [a.name for a in spec.args if a.name not in raw]
    if missing:
        raise InputError(f"{spec.name} needs argument {missing[0]!r} (arguments: {', '.join(a.name for a in spec.args)})")
    unknown = sorted(set(raw) - {a.name for a in spec.args})
    if unknown:
        raise InputError(f"{spec.name} has no argument {unknown[0]!r} (arguments: {', '.join(a.name for a in spec.args)})")

    arrays: dict[str, np.ndarray] = {}
    for a in spec.args:
        what = f"{spec.name} {a.name}"
        arrays[a.name] = round_values(raw[a.name], dtype, what) if a.domain.is_float else class_indices(raw[a.name], what)

    if spec.layout is Layout.ROWWISE and arrays["input"].ndim == 1:
        arrays["input"] = arrays["input"][None, :]
        for a in spec.args[1:]:
            if not a.per_row:
                arrays[a.name] = arrays[a.name].reshape(1, -1)
    for a in spec.args:
        if a.per_row:
            arrays[a.name] = arrays[a.name].reshape(-1)
    validate(spec, arrays)
    return arrays


def validate(spec: LossSpec, arrays: dict[str, np.ndarray]) -> None:
    """Shapes and domains of ready arrays (row-wise input [B, C]); raises InputError."""
    x = arrays["input"]
    if spec.layout is Layout.ROWWISE and x.ndim != 2:
        raise InputError(f"{spec.name}: input must be a [batch, classes] matrix, got shape {x.shape}")
    for a in spec.args[1:]:
        expected = (x.shape[0],) if a.per_row else x.shape
        if arrays[a.name].shape != expected:
            raise InputError(f"{spec.name}: {a.name} shape {arrays[a.name].shape} does not match input shape {x.shape}"
                             + (" (one value per row expected)" if a.per_row else ""))
        if a.domain is Domain.CLASS_INDEX:
            t = arrays[a.name]
            bad = (t < 0) | (t >= x.shape[1])
            if bad.any():
                raise InputError(f"{spec.name}: class index {int(t[bad][0])} out of range [0, {x.shape[1]})")
        else:
            _check_domain(spec, a.name, a.domain, arrays[a.name])
    _check_domain(spec, "input", spec.args[0].domain, x)
