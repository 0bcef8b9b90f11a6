"""lossbench: accuracy and speed of deep-learning losses against a certified arbitrary-precision reference."""
