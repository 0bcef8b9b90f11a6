"""User-given values -> validated arrays in the requested dtype.

Numbers are parsed as exact decimals and rounded once, to nearest-even, into the
dtype (parsing to float64 first and casting would round twice), then checked
against the loss's argument domains and shapes. Every problem raises
``InputError`` with a one-line message naming it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from harness.model.spec import Domain, Layout, LossSpec
from reference.formats import get_format, round_rational

_NONFINITE_WORDS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan,
                    "infinity": math.inf, "-infinity": -math.inf}


# NumPy's limit on an array's dimensions, and so on a value's nesting.
MAX_DIMENSIONS = 64
# A decimal whose leading digit is beyond 10^OVERFLOW_EXPONENT rounds to infinity in
# every dtype (float64's largest is 1.8e308), one below 10^UNDERFLOW_EXPONENT to zero
# (its smallest subnormal is 4.9e-324): such a literal is rounded at once, since its
# exact value can have a billion digits.
OVERFLOW_EXPONENT = 310
UNDERFLOW_EXPONENT = -330
_NUMBER = re.compile(r"(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")


class InputError(ValueError):
    pass


def _exact_decimal(text: str) -> Fraction | float:
    """The decimal's exact value; -0.0 stays a float so its sign survives, and a
    value far beyond any dtype's range is its rounding (±inf, ±0.0)."""
    sign, whole, fraction, exponent = _NUMBER.fullmatch(text.strip()).groups()  # type: ignore[union-attr]
    digits = (whole + (fraction or "")).lstrip("0")
    if not digits:
        return -0.0 if sign else Fraction(0)
    if exponent and len(exponent.lstrip("+-")) > 9:  # past any dtype whatever the digits
        leading = math.inf if not exponent.startswith("-") else -math.inf
    else:
        # the power of ten of the leading digit
        leading = int(exponent or 0) + len(whole.lstrip("0")) - 1 if whole.lstrip("0") else \
            int(exponent or 0) - (len(fraction or "") - len((fraction or "").lstrip("0"))) - 1
    if leading > OVERFLOW_EXPONENT:
        return -math.inf if sign else math.inf
    if leading < UNDERFLOW_EXPONENT:
        return -0.0 if sign else 0.0
    return Fraction(text)


def parse_json(text: str, what: str) -> Any:
    """JSON with numbers kept exact; 'inf', '-inf', 'nan' strings (and Infinity/NaN) allowed."""
    try:
        return json.loads(text, parse_float=_exact_decimal, parse_int=_exact_decimal,
                          parse_constant=lambda c: _NONFINITE_WORDS[c.lower()])
    except (json.JSONDecodeError, KeyError) as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{what} is nested too deeply (at most {MAX_DIMENSIONS} levels)") from None


def _leaf(value: Any, what: str) -> Fraction | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, str)):
        raise InputError(f"{what} must hold numbers, got {json.dumps(value) if not isinstance(value, Fraction) else value}")
    if isinstance(value, str):
        try:
            return _NONFINITE_WORDS[value.strip().lower()]
        except KeyError:
            raise InputError(f"{what} must hold numbers, got the string {value!r}") from None
    return value if isinstance(value, float) else Fraction(value)


def _nested(value: Any, what: str, depth: int = 0) -> tuple[list[Any], tuple[int, ...]]:
    """Flatten a (possibly nested) list, checking it is rectangular."""
    if not isinstance(value, list):
        return [_leaf(value, what)], ()
    if not value:
        raise InputError(f"{what} is empty")
    if depth >= MAX_DIMENSIONS:
        raise InputError(f"{what} is nested too deeply (at most {MAX_DIMENSIONS} levels)")
    parts = [_nested(v, what, depth + 1) for v in value]
    shapes = {shape for _, shape in parts}
    if len(shapes) != 1:
        raise InputError(f"{what} is a ragged nested list (rows of different shapes)")
    return [leaf for flat, _ in parts for leaf in flat], (len(value), *shapes.pop())


@dataclass(frozen=True)
class Typed:
    """The values as the user typed them (exact), per argument in flat order, and
    the dtype they were rounded into: messages name what was typed."""

    dtype: str
    values: dict[str, list[Fraction | float]]


def round_values(value: Any, dtype: str, what: str) -> tuple[np.ndarray, list[Fraction | float]]:
    """A float64 array holding the dtype-rounded values (exactly representable in
    dtype), and the exact values in flat order."""
    flat, shape = _nested(value, what)
    fmt = get_format(dtype)
    rounded = [v if isinstance(v, float) else round_rational(v, fmt) for v in flat]
    return np.array(rounded, dtype=np.float64).reshape(shape or (1,)), flat


def class_indices(value: Any, what: str) -> np.ndarray:
    flat, shape = _nested(value, what)
    if not all(isinstance(v, Fraction) and v.denominator == 1 for v in flat):
        raise InputError(f"{what} must be integer class indices")
    beyond = [v for v in flat if abs(v) >= 2**62]
    if beyond:
        raise InputError(f"{what}: class index {float(beyond[0]):.6g} is out of range (beyond any number of classes)")
    return np.array([int(v) for v in flat], dtype=np.int64).reshape(shape or (1,))


def _check_domain(spec: LossSpec, name: str, domain: Domain, values: np.ndarray,
                  typed: Typed | None = None) -> None:
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
        got = f"{float(flat[i])!r} at position {i}"
        if typed is not None and name in typed.values:
            given = typed.values[name][i]
            if not (isinstance(given, float) and math.isnan(given)) and given != flat[i]:
                got = f"{float(given)!r} at position {i}, which rounds to {float(flat[i])!r} in {typed.dtype}"
        raise InputError(f"{spec.name}: {name} must be {allowed}; got {got}")


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
    typed = Typed(dtype, {})
    for a in spec.args:
        what = f"{spec.name} {a.name}"
        if a.domain.is_float:
            arrays[a.name], typed.values[a.name] = round_values(raw[a.name], dtype, what)
        else:
            arrays[a.name] = class_indices(raw[a.name], what)

    if spec.layout is Layout.ROWWISE and arrays["input"].ndim == 1:
        arrays["input"] = arrays["input"][None, :]
        for a in spec.args[1:]:
            if not a.per_row:
                arrays[a.name] = arrays[a.name].reshape(1, -1)
    for a in spec.args:
        if a.per_row:
            arrays[a.name] = arrays[a.name].reshape(-1)
    validate(spec, arrays, typed)
    return arrays


def validate(spec: LossSpec, arrays: dict[str, np.ndarray], typed: Typed | None = None) -> None:
    """Shapes and domains of ready arrays (row-wise input [B, C]); raises InputError
    naming the value as typed where ``typed`` has it."""
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
            _check_domain(spec, a.name, a.domain, arrays[a.name], typed)
    _check_domain(spec, "input", spec.args[0].domain, x, typed)
