"""What a Dask cluster costs over the local pool on one machine: the quick sweep of
three losses (every framework, dtype, regime and size; no timing) run with
`--jobs 2` and with `--scheduler local --jobs 2`, each from an empty store and
reference cache, alternating, median of the runs (wall seconds).

    .venv/bin/python bench/cluster_overhead.py [--runs 5] [--loss mse bce cross_entropy]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(losses: list[str], extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", "sweep", "--loss", *losses, "--jobs", "2", "--no-progress",
                        "--db", str(Path(folder) / "r.sqlite"), *extra], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loss", nargs="+", default=["mse", "bce", "cross_entropy"])
    args = parser.parse_args()
    pool, cluster = [], []
    for run in range(args.runs):
        pool.append(sweep(args.loss, []))
        cluster.append(sweep(args.loss, ["--scheduler", "local"]))
        print(f"run {run + 1}: local pool {pool[-1]:.1f} s, local Dask cluster {cluster[-1]:.1f} s", flush=True)
    ratio = statistics.median(cluster) / statistics.median(pool)
    print(f"median of {args.runs}: local pool {statistics.median(pool):.1f} s, local Dask cluster "
          f"{statistics.median(cluster):.1f} s; ratio {ratio:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
