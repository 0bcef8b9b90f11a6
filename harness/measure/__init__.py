"""Measurement: inputs, regimes, reference items and sets, metrics, evaluation, the atlas, timing, bandwidth."""
