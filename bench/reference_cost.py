"""Reference cost: lossbench's shared set reference against a plain per-element
mpmath loop over the same inputs, in the same run.

The plain loop is what one writes without this harness: convert each element,
evaluate the textbook formula at a fixed 113 bits (no settlement check), and do
that again for every cell (framework x impl) and every size. lossbench settles
each item once, proven: a rational loss exactly over whole arrays in float64, a
narrower dtype's items through the float64 pre-pass with a rigorous error bound
(reference.prepass), the rest in Arb balls; it shares them across cells and
sizes through exact prefix sums and caches them on disk (a warm rerun costs a
file read).

    taskset -c 0 .venv/bin/python bench/reference_cost.py [--loss L ...] [--size N] [--cells K]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mpmath

from harness import adapters
from harness.measure.quantity import VALUE
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import InputSet
from harness.running.sweep import QUICK_SIZES


def _plain_mse(x: float, y: float) -> mpmath.mpf:
    return (mpmath.mpf(x) - mpmath.mpf(y)) ** 2


def _plain_bce(p: float, y: float) -> mpmath.mpf:
    p, y = mpmath.mpf(p), mpmath.mpf(y)
    return -(y * mpmath.log(p) + (1 - y) * mpmath.log(1 - p))


def _plain_cross_entropy(row: list[float], t: int) -> mpmath.mpf:
    z = [mpmath.mpf(v) for v in row]
    return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z)) - z[t]


PLAIN = {"mse": _plain_mse, "bce": _plain_bce, "cross_entropy": _plain_cross_entropy}


def plain_loop(loss: str, arrays: dict, prec: int = 113) -> mpmath.mpf:
    """Textbook mp evaluation of the mean, element by element."""
    pairs = zip(arrays["input"].tolist(), arrays["target"].tolist())
    with mpmath.workprec(prec):
        terms = [PLAIN[loss](a, b) for a, b in pairs]
        return mpmath.fsum(terms) / len(terms)


def cells_sharing(loss: str) -> int:
    """(framework, impl) cells that read one set's reference on this machine's CPU."""
    count = 0
    for name in adapters.FRAMEWORKS:
        try:
            count += len(adapters.load(name).impl_names(loss))
        except adapters.FrameworkUnavailable:
            continue
    return count


def measure(loss: str, size: int) -> dict[str, float]:
    """Seconds for the plain loop (one pass), the settled shared reference, and a warm cache read."""
    inputset = InputSet.with_defaults(loss, "float32", "typical")
    sizes = [n for n in QUICK_SIZES if n <= size]
    arrays = inputset.inputs(size)
    start = time.perf_counter()
    plain_loop(loss, arrays)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    reference = VALUE.compute(inputset, sizes)
    ours = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        cache = ReferenceCache(Path(tmp))
        cache.save(inputset, VALUE, reference)
        start = time.perf_counter()
        cache.read(cache.path(inputset, VALUE), VALUE, inputset.key(VALUE))
        warm = time.perf_counter() - start
    return {"plain": plain, "ours": ours, "warm": warm, "sizes": len(sizes), "size_sum": sum(sizes)}


def report(loss: str, size: int, cells: int, t: dict[str, float]) -> None:
    plain, ours, warm = t["plain"], t["ours"], t["warm"]
    plain_sweep = plain * cells * t["size_sum"] / size  # every cell, every size, from scratch
    per = 1e6 / size
    print(f"{loss} float32 typical, {size} elements, {t['sizes']} sizes, {cells} cells sharing it:")
    print(f"  plain mpmath loop, one pass:       {plain:7.2f} s  ({plain * per:6.1f} us/element, unsettled)")
    print(f"  lossbench settled reference:       {ours:7.2f} s  ({ours * per:6.1f} us/element, all sizes; "
          f"{size / ours:,.0f} elements/s)")
    print(f"  per element, one pass:             ratio plain/lossbench = {plain / ours:.2f}")
    print(f"  whole sweep ({cells} cells x sizes):  plain {plain_sweep:.1f} s vs lossbench {ours:.2f} s cold "
          f"(ratio {plain_sweep / ours:.1f}) and {warm * 1e3:.1f} ms warm (cache read)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--cells", type=int, help="framework x impl cells per set (default: counted from the adapters)")
    parser.add_argument("--loss", nargs="+", choices=sorted(PLAIN), default=["mse", "cross_entropy"])
    args = parser.parse_args()
    # Time everything first: counting cells imports the frameworks, whose threads
    # would compete with the timed reference.
    timings = {loss: measure(loss, args.size) for loss in args.loss}
    for loss, t in timings.items():
        report(loss, args.size, args.cells or cells_sharing(loss), t)


if __name__ == "__main__":
    main()
