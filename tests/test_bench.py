"""The benchmark suites: the grid derives from the registry, asv accepts the
suite, and the pytest-benchmark suite collects and runs with its metadata."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import adapters
from harness.running import benchgrid, benchrun
from harness.model import registry
from harness.model.spec import DTYPES

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_full_grid_is_every_case_that_exists() -> None:
    """Every impl of every loss in each available adapter's own table, in every dtype
    it does not declare a failure, at every size: no case that would only say n/a."""
    full = benchgrid.cases(full=True)
    expected = set()
    for name in adapters.FRAMEWORKS:
        try:
            adapter = adapters.load(name)
        except adapters.FrameworkUnavailable:
            continue
        for impl, table in adapter.impls.items():
            expected |= {benchgrid.BenchCase(loss, f"{name}:{impl}", dtype, size, mode) for loss in table
                         for dtype in DTYPES if not adapter.known_failure(loss, impl, dtype, "cpu")
                         for size in benchgrid.SIZES for mode in adapter.modes}
    assert len(full) == len(set(full)) and set(full) == expected
    assert {c.loss for c in full} == set(registry.names())
    assert all(benchgrid.BenchCase.from_id(c.id) == c for c in full)
    assert not any(c.impl == "numpy:native" or c.impl == "tensorflow:composed" and c.loss == "bce" for c in full)
    assert {c.mode for c in full} == {"eager", "compiled"}
    assert all(c.id.count("/") == 3 for c in full if c.mode == "eager")  # eager ids as before modes existed


def test_default_subset_is_seeded_per_case_and_keeps_the_anchors() -> None:
    full, subset = benchgrid.cases(full=True), benchgrid.cases(full=False)
    assert subset == [c for c in full if benchgrid.in_subset(c)]
    assert 0 < len(subset) < len(full) / 4
    anchors = {benchgrid.BenchCase(*a) for a in benchgrid.ANCHORS}
    assert anchors <= set(subset)


def test_environment_variable_selects_the_whole_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(benchgrid.FULL_ENV, "1")
    assert benchgrid.cases() == benchgrid.cases(full=True)
    monkeypatch.setenv(benchgrid.FULL_ENV, "0")
    assert benchgrid.cases() == benchgrid.cases(full=False)


def test_unsupported_cases_raise_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="numpy has no native mse"):
        benchrun.prepare(benchgrid.BenchCase("mse", "numpy:native", "float32", 1000))
    with pytest.raises(NotImplementedError, match="no gradient"):
        benchrun.prepare(benchgrid.BenchCase("focal", "numpy:naive", "float32", 1000), gradient=True)
    with pytest.raises(NotImplementedError, match="tracked up to"):
        benchrun.accuracy_task(benchgrid.BenchCase("mse", "numpy:stable", "float32", 1_000_000))


def test_asv_suite_is_derived_from_the_grid() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench import losses
    finally:
        sys.path.remove(str(ROOT))
    ids = [c.id for c in benchgrid.cases()]
    for suite in (losses.Forward, losses.Backward, losses.Accuracy):
        assert suite.params == [ids] and suite.param_names == ["case"]
    assert losses.Accuracy.track_max_ulp.unit == "ulp"
    names = {n for suite in (losses.Forward, losses.Backward, losses.Accuracy) for n in dir(suite)}
    assert {"time_forward", "time_backward", "peakmem_forward", "peakmem_backward", "track_max_ulp"} <= names


def test_asv_check_passes() -> None:
    asv = BIN / "asv"
    if not asv.exists():
        pytest.skip("asv is not installed in this environment")
    proc = subprocess.run([str(asv), "check", "--python=same"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout


def test_accuracy_track_of_a_correctly_rounded_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """|x - y| in float64 is one correctly rounded subtraction: at most half an ulp."""
    monkeypatch.setenv(benchgrid.REFCACHE_ENV, str(tmp_path))
    task = benchrun.accuracy_task(benchgrid.BenchCase("mae", "numpy:naive", "float64", 1000))
    row = benchrun.accuracy(task)
    assert row.items_measured == 1000 and row.unexpected_nonfinite == 0
    assert 0 <= row.max_ulp <= 0.5


def _pytest_bench(*args: str, out: Path, full: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(out), **{benchgrid.FULL_ENV: "1" if full else "0"})
    return subprocess.run([sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)


def test_pytest_benchmark_suite_collects_the_grid(tmp_path: Path) -> None:
    proc = _pytest_bench("--collect-only", "-q", out=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = {line.split("::", 1)[1] for line in proc.stdout.splitlines() if "::" in line}
    expected = {f"test_loss[{c.id}-{p}]" for c in benchgrid.cases() for p in ("forward", "backward")}
    assert collected == expected


def test_pytest_benchmark_records_case_metadata(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = _pytest_bench("-q", "-k", "mse/numpy:stable/float32/1000-", "--benchmark-only",
                         "--benchmark-min-rounds=3", "--benchmark-max-time=0.05", f"--benchmark-json={out}",
                         out=tmp_path, full=True)  # the whole grid, so that mse / numpy:stable is in it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {b["extra_info"]["passes"]: b for b in json.loads(out.read_text())["benchmarks"]}
    assert set(runs) == {"forward", "forward+backward"}
    info = runs["forward+backward"]["extra_info"]
    assert info | {"bytes": None} == {"loss": "mse", "framework": "numpy", "impl": "stable", "dtype": "float32",
                                      "size": 1000, "device": "cpu", "mode": "eager", "passes": "forward+backward",
                                      "method": "numpy analytic", "bytes": None}
    assert info["bytes"] == 1000 * 4 * 3  # input and target read, gradient written
    assert runs["forward"]["extra_info"]["bytes"] == 1000 * 4 * 2 + 4
