"""Numbers as the JSON and text outputs write them: non-finite values as strings,
references in decimal."""
from __future__ import annotations

import math

import mpmath
import numpy as np

from reference.certify import RefValue


def jsonable(array: np.ndarray) -> list:
    """An input array as the JSON the CLI reads: nested lists, non-finite values as strings."""
    if array.dtype.kind == "i":
        return array.tolist()
    return [json_number(v) for v in array.ravel().tolist()] if array.ndim == 1 else [jsonable(row) for row in array]


def json_number(value: float | None) -> float | str | None:
    """A float as JSON has it: "nan", "inf" and "-inf" as strings (None stays None)."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def reference_decimal(ref: RefValue, digits: int = 30) -> str:
    """A reference value in decimal, every printed digit proven: up to ``digits``
    significant digits, as many as both ends of its enclosure round to (correct
    rounding of the exact value then gives the same digits). inf / -inf / nan as
    such. Far outside any binary format's range (beyond 2**+-EXPONENT_FORM) it is
    written m*2^e, e the exact binary exponent and m in [1, 2) in decimal."""
    lower, upper = (mpmath.mp.make_mpf(e) for e in (ref.lower, ref.upper))  # type: ignore[arg-type]
    if not mpmath.isfinite(lower) or not mpmath.isfinite(upper):
        return str(json_number(float(lower))) if lower == upper or mpmath.isnan(lower) else "nan"
    for count in range(digits, 0, -1):
        low, high = _decimal(lower, count, digits), _decimal(upper, count, digits)
        if low == high:
            return low
    return "nan"  # not one digit is known (an unsettled, wide enclosure)


EXPONENT_FORM = 4096


def _decimal(x: mpmath.mpf, digits: int, fixed_below: int) -> str:
    """``x`` correctly rounded to ``digits`` significant decimal digits (exact
    integer arithmetic), in mpmath.nstr's layout."""
    sign, man, exponent, bitcount = x._mpf_
    if not man:
        return "0.0"
    binade = exponent + bitcount - 1
    if abs(binade) > EXPONENT_FORM:
        mantissa = mpmath.mp.make_mpf((0, man, exponent - binade, bitcount))
        return f"{'-' if sign else ''}{_decimal(mantissa, digits, fixed_below)}*2^{binade}"
    k = math.floor(binade * math.log10(2))
    while True:
        scale = digits - 1 - k
        numerator = int(man) * 10 ** max(scale, 0) << max(exponent, 0)
        denominator = 10 ** max(-scale, 0) << max(-exponent, 0)
        quotient, remainder = divmod(numerator, denominator)
        if 2 * remainder > denominator or (2 * remainder == denominator and quotient & 1):
            quotient += 1
        if quotient >= 10 ** digits:
            k += 1
        elif quotient < 10 ** (digits - 1):
            k -= 1
        else:
            break
    text = str(quotient)
    if -5 < k < fixed_below:
        body = f"{text[:k + 1]}.{text[k + 1:] or '0'}" if k >= 0 else f"0.{'0' * (-k - 1)}{text}"
    else:
        body = f"{text[0]}.{text[1:] or '0'}e{'+' if k > 0 else ''}{k}"
    return f"-{body}" if sign else body
