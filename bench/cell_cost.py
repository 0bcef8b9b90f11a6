"""Where an untimed cell's time goes, per framework: the main job's untimed cells of
one framework (every loss, regime and size, gradients on typical inputs), planned as
the sweep plans them and measured one after another in this process, as a worker
measures them (run_cell). The framework's calls (Adapter.run: per item, reduced,
gradient) and the metrics (cell.summary) are timed apart from the rest (inputs,
reference reads, the row). References the cache lacks are computed first.

    .venv/bin/python bench/cell_cost.py [--framework F ...] [--dtype D ...] [--refcache DIR]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import adapters
from harness.measure.environment import describe_frameworks
from harness.measure.refcache import ReferenceCache
from harness.model.dtypes import DTYPES
from harness.running import cell
from harness.running.cell import DEFAULT_CELL_TIMEOUT, CellJob, run_cell
from harness.running.sweep import DEFAULT_TIMED_REGIMES, SweepConfig, default_config, plan, prepare_references
from harness.store import StoredKeys

DEFAULT_REFCACHE = Path("reports/refcache")  # the main job's, next to its store


@contextlib.contextmanager
def timed(owner: Any, name: str, spent: collections.Counter, label: str) -> Iterator[None]:
    """``owner.name`` replaced for the block by itself adding its seconds to ``spent[label]``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started

    setattr(owner, name, counted)
    try:
        yield
    finally:
        setattr(owner, name, original)


def measure(framework: str, dtypes: tuple[str, ...], cache: ReferenceCache) -> tuple[int, collections.Counter]:
    """(cells, seconds by part) of the framework's untimed main-job cells in ``dtypes``."""
    config = SweepConfig(**{**default_config(quick=True), "frameworks": (framework,), "dtypes": dtypes}, jobs=2,
                         grad=True, grad_regimes=DEFAULT_TIMED_REGIMES)
    prepare_references(config, cache)
    tasks = plan(config, describe_frameworks([framework]), StoredKeys({}, set())).tasks
    spent: collections.Counter = collections.Counter()
    with timed(adapters.Adapter, "run", spent, "framework"), timed(cell, "summary", spent, "metrics"):
        started = time.perf_counter()
        for task in tasks:
            run_cell(CellJob.of(task, cache, DEFAULT_CELL_TIMEOUT))
        spent["cell"] = time.perf_counter() - started
    return len(tasks), spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", nargs="+", choices=list(adapters.FRAMEWORKS), default=list(adapters.FRAMEWORKS))
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=["float32", "float64"])
    parser.add_argument("--refcache", type=Path, default=DEFAULT_REFCACHE)
    args = parser.parse_args()
    cache = ReferenceCache(args.refcache)
    print("ms per cell: total = framework calls + metrics + rest (inputs, reference reads, the row)")
    for framework in args.framework:
        count, spent = measure(framework, tuple(args.dtype), cache)
        rest = spent["cell"] - spent["framework"] - spent["metrics"]
        per = 1e3 / count
        print(f"{framework:<11} {count:5d} cells: {spent['cell'] * per:6.1f} = {spent['framework'] * per:5.1f} "
              f"+ {spent['metrics'] * per:4.1f} + {rest * per:4.1f}")


if __name__ == "__main__":
    main()
