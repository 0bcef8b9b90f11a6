"""The conventions atlas's verdicts on a framework's value at an edge input,
from the metric's non-finite classes and the ULP error (harness.measure.atlas
assigns them; the text and the report read them back from the store)."""
from __future__ import annotations

from harness.measure import metrics

EXACT, ROUNDING, INACCURATE, EPSILON = "exact", "rounding", "inaccurate", "epsilon"
CLAMPED, NAN_SUPPRESSED, UNSETTLED, ERROR = "clamped", "nan_suppressed", "unsettled", "error"
FROM_CLASS = {
    metrics.EXPECTED_INF: EXACT, metrics.EXPECTED_NAN: EXACT,
    metrics.MISSED_INF: CLAMPED,  # an infinity replaced by a finite bound
    metrics.MISSED_NAN: NAN_SUPPRESSED,  # an undefined value replaced by a number
    metrics.SPURIOUS_INF: metrics.SPURIOUS_INF, metrics.SPURIOUS_NAN: metrics.SPURIOUS_NAN,
    metrics.WRONG_SIGN_INF: metrics.WRONG_SIGN_INF,
}
DEVIATIONS = (EXACT, ROUNDING, EPSILON, CLAMPED, INACCURATE, NAN_SUPPRESSED, metrics.SPURIOUS_INF,
              metrics.SPURIOUS_NAN, metrics.WRONG_SIGN_INF, UNSETTLED, ERROR)
# The expected verdicts: counted in the text view, not listed one by one.
EXPECTED = (EXACT, ROUNDING)
