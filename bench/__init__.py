"""lossbench benchmarks: the asv suite (losses.py), the pytest-benchmark suite
(test_throughput.py) and the reference-cost script. Parameters come from
harness.running.benchgrid, which derives them from the registry."""
