"""lossbench: accuracy and speed of deep-learning losses against an mpmath reference."""
