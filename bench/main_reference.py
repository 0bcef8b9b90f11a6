"""The main job's reference alone: every value and gradient reference the first sweep
of `lossbench run` reads, computed into an empty cache by two worker processes, timed,
then counted by how each item (and gradient component) settled (exact in float64,
the float64 pre-pass at precision 53, balls at the first precision of 128 bits,
escalated, unsettled).

    .venv/bin/python bench/main_reference.py
"""
from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import numpy as np

from harness.measure.refcache import ReferenceCache
from harness.running.sweep import DEFAULT_TIMED_REGIMES, SweepConfig, default_config, prepare_references


def main() -> None:
    defaults = default_config(quick=True)
    sizes = defaults["sizes"]
    config = SweepConfig(**defaults, jobs=2, time=True, timed_sizes=(min(sizes), max(sizes)), grad=True,
                         grad_regimes=DEFAULT_TIMED_REGIMES)
    folder = Path(tempfile.mkdtemp())
    report, failed = prepare_references(config, ReferenceCache(folder))
    print(f"reference: {report.reference_sets} sets in {report.reference_seconds:.1f} s, {len(failed)} failed")
    values, gradients = collections.Counter(), collections.Counter()
    for path in folder.glob("*.npz"):
        with np.load(path) as data:
            if "items_precision" in data.files:
                p = data["items_precision"]
                values.update({"exact": int((p == 0).sum()), "pre-pass": int((p == 53).sum()),
                               "balls at 128": int((p == 128).sum()), "escalated": int((p > 128).sum()),
                               "unsettled": int((~data["items_settled"]).sum())})
            for name in (n for n in data.files if n.endswith("_precision") and not n.startswith("items")
                         and not n.startswith(("mean", "sum"))):
                gradients.update({"pre-pass": int((data[name] == 53).sum()), "128": int((data[name] == 128).sum()),
                                  "escalated": int((data[name] > 128).sum())})
    total = values["exact"] + values["pre-pass"] + values["balls at 128"] + values["escalated"]
    print(f"value items: {total:,}; " + ", ".join(f"{k} {v:,} ({v / max(total, 1):.1%})" for k, v in values.items()))
    print("gradient components (every size's file entries): " + ", ".join(f"{k} {v:,}" for k, v in gradients.items()))


if __name__ == "__main__":
    main()
