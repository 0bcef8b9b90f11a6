"""mpmath ground truth: exact inputs, canonical loss formulas, precision
escalation, and correct rounding back to binary formats."""
