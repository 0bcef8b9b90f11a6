"""Ground truth: exact inputs, the canonical loss formulas written once over a
rigorous arithmetic (Arb balls or mpmath intervals), settlement of each value by
its enclosure, and correct rounding back to binary formats."""
