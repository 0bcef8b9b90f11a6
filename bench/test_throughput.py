"""pytest-benchmark suite: the cases of harness.running.benchgrid, forward and
forward+backward, each with its metadata in extra_info (so the JSON output can
be joined with the sweep store and the asv results).

    .venv/bin/pytest bench --benchmark-only --benchmark-json=out.json
    LOSSBENCH_BENCH_FULL=1 .venv/bin/pytest bench --benchmark-only ...   # whole grid
"""
from __future__ import annotations

import pytest

from harness.running import benchgrid, benchrun

CASES = benchgrid.cases()


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_loss(benchmark: pytest.FixtureDef, case: benchgrid.BenchCase, gradient: bool) -> None:
    try:
        prepared = benchrun.prepare(case, gradient=gradient)
    except NotImplementedError as exc:
        pytest.skip(str(exc))
    benchmark.extra_info.update(loss=case.loss, framework=case.framework, impl=case.impl_name, dtype=case.dtype,
                                size=case.size, device=benchgrid.DEVICE, mode=case.mode, passes="forward+backward" if gradient else "forward",
                                method=prepared.method, bytes=prepared.bytes_moved)
    with prepared.context():
        benchmark(lambda: prepared.synchronize(prepared.call()))
