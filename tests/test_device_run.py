"""The device run (bench/device_run.py) on this machine's CPU, as the GPU machine
would run it: references prepared here, then the run in a process that cannot
import python-flint, tqdm, TensorFlow or gmpy2 (the GPU machine has none of
them); then `lossbench merge` of its store beside a sweep's."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "device_run.py")
SUBSET = ["--loss", "mse", "cross_entropy", "--dtype", "float32", "--sizes", "100", "1000", "--reference-size", "100",
          "--jobs", "2"]
ABSENT = ("flint", "tqdm", "tensorflow", "gmpy2")


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=env or dict(os.environ))


def _device_machine(folder: Path) -> dict[str, str]:
    """An environment whose processes (the workers too) fail to import what the GPU
    machine lacks: a package of each name that raises ImportError, first on the path."""
    for name in ABSENT:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the device machine')\n")
    return {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", "MPMATH_NOGMPY": "1"}


@pytest.fixture(scope="module")
def device_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str],
                                                                   subprocess.CompletedProcess]:
    """(references, out, the device machine's environment, the run)."""
    folder = tmp_path_factory.mktemp("device")
    references, out = folder / "references", folder / "out"
    prepared = _run([SCRIPT, "--prepare", "--references", str(references), *SUBSET])
    assert prepared.returncode == 0, prepared.stderr
    assert "MiB in" in prepared.stdout
    env = _device_machine(folder / "absent")
    run = _run([SCRIPT, "--device", "cpu", "--out", str(out), "--references", str(references), *SUBSET], env)
    return references, out, env, run


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_the_device_run_needs_neither_flint_nor_tqdm_nor_tensorflow(device_run) -> None:
    _, out, env, run = device_run
    assert run.returncode == 0, run.stdout + run.stderr
    probe = subprocess.run([sys.executable, "-c", "import flint"], capture_output=True, text=True, env=env)
    assert "not on the device machine" in probe.stderr  # the stand-ins really refuse
    db = out / "device.sqlite"
    cells = _rows(db, "SELECT framework, impl, loss, regime, size, status, items, items_measured, reduced_reference, "
                      "forward_seconds, device FROM cells")
    assert {c[0] for c in cells} == {"torch", "jax"} and {c[10] for c in cells} == {"cpu"}
    assert {c[5] for c in cells} == {"ok"}
    # Every framework x impl x loss x regime has both sizes.
    shapes = {}
    for framework, impl, loss, regime, size, *_ in cells:
        shapes.setdefault((framework, impl, loss, regime), set()).add(size)
    assert set(map(frozenset, shapes.values())) == {frozenset({100, 1000})}
    for framework, impl, loss, regime, size, _, items, measured, reduced_reference, seconds, _ in cells:
        if size == 100:  # referenced whole
            assert reduced_reference is not None and measured <= items
        else:  # measured on the first items against the size-100 reference; no reference for its mean
            assert reduced_reference is None and measured <= items // 10
        assert (seconds is not None) == (size == 1000 and regime == "typical")  # the largest size is timed
    gradients = _rows(db, "SELECT size, status FROM gradients")
    assert {size for size, _ in gradients} == {100} and len(gradients) == len(cells) // 2
    assert {d for (d,) in _rows(db, "SELECT DISTINCT device FROM bandwidth")} == {"cpu"}
    assert "device run:" in run.stdout


def test_a_reference_not_carried_is_named_then_computed_with_mpmath_when_asked(device_run, tmp_path: Path) -> None:
    references, _, env, _ = device_run
    argv = [SCRIPT, "--device", "cpu", "--out", str(tmp_path), "--references", str(references), "--loss", "log_cosh",
            "--dtype", "float32", "--sizes", "100", "--reference-size", "100", "--jobs", "1"]
    first = _run(argv, env)
    assert first.returncode == 1, first.stderr
    assert "reference not in the reference cache" in first.stdout and "not measured:" in first.stdout
    assert _rows(tmp_path / "device.sqlite", "SELECT COUNT(*) FROM cells") == [(0,)]
    second = _run([*argv, "--compute-missing"], env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "computing their references here with the mpmath engine" in second.stdout
    stored = _rows(tmp_path / "device.sqlite", "SELECT status, max_ulp FROM cells")
    assert stored and all(status == "ok" and ulp is not None for status, ulp in stored)


def test_merge_puts_the_device_run_beside_a_sweep_once(device_run, tmp_path: Path) -> None:
    _, out, _, _ = device_run
    db = tmp_path / "r.sqlite"
    sweep = _run(["-m", "harness", "sweep", "--loss", "mse", "--framework", "numpy", "--dtype", "float32", "--regime",
                  "typical", "--sizes", "100", "--no-progress", "--db", str(db)])
    assert sweep.returncode == 0, sweep.stderr
    device_cells = _rows(out / "device.sqlite", "SELECT COUNT(*) FROM cells")[0][0]
    merged = _run(["-m", "harness", "merge", str(out / "device.sqlite"), "--db", str(db)])
    assert merged.returncode == 0, merged.stderr
    assert f"1 runs, {device_cells} cells" in merged.stdout
    runs = _rows(db, "SELECT id, status, environment FROM runs ORDER BY id")
    assert len(runs) == 2 and runs[1][1] == "complete" and '"torch"' in runs[1][2]
    assert _rows(db, "SELECT COUNT(*) FROM cells WHERE run_id = 2") == [(device_cells,)]
    assert _rows(db, "SELECT COUNT(*) FROM bandwidth WHERE run_id = 2")[0][0] > 0
    again = _run(["-m", "harness", "merge", str(out / "device.sqlite"), "--db", str(db)])
    assert "0 runs, 0 cells, 0 gradients, 0 bandwidth" in again.stdout
    assert _rows(db, "SELECT COUNT(*) FROM cells") == [(device_cells + 2,)]  # numpy naive and stable


@pytest.mark.parametrize("target, problem", [("self", "is the store being merged into"),
                                             ("missing", "no results store at"),
                                             ("text", "not an SQLite file")])
def test_merge_refuses_what_it_cannot_merge(tmp_path: Path, target: str, problem: str) -> None:
    db = tmp_path / "r.sqlite"
    (tmp_path / "text").write_text("not a store\n")
    source = {"self": db, "missing": tmp_path / "missing.sqlite", "text": tmp_path / "text"}[target]
    proc = _run(["-m", "harness", "merge", str(source), "--db", str(db)])
    assert proc.returncode == 2 and problem in proc.stderr and "Traceback" not in proc.stderr


def test_the_report_sets_cuda_beside_cpu(device_run, tmp_path: Path) -> None:
    """The device run's store relabelled as CUDA (this machine has none), one cell
    made 4 ulp worse, merged beside a sweep of the same cells: the report lists that
    cell first among the CPU-against-CUDA differences, the timed cells' throughput on
    each device, and the device run's environment."""
    _, out, _, _ = device_run
    cuda = tmp_path / "cuda.sqlite"
    cuda.write_bytes((out / "device.sqlite").read_bytes())
    with sqlite3.connect(cuda) as conn:
        for table in ("cells", "gradients", "bandwidth"):
            conn.execute(f"UPDATE {table} SET device = 'cuda'")
        conn.execute("UPDATE runs SET config = replace(config, '\"devices\": [\"cpu\"]', '\"devices\": [\"cuda\"]')")
        conn.execute("UPDATE cells SET max_ulp = max_ulp + 4 WHERE loss = 'mse' AND framework = 'torch' "
                     "AND size = 100 AND regime = 'typical'")
    db = tmp_path / "r.sqlite"
    sweep = _run(["-m", "harness", "sweep", "--loss", "mse", "cross_entropy", "--framework", "torch", "jax",
                  "--dtype", "float32", "--regime", "typical", "saturated", "--sizes", "100", "1000", "--time",
                  "--time-size", "1000", "--no-progress", "--db", str(db)])
    assert sweep.returncode == 0, sweep.stderr
    assert _run(["-m", "harness", "merge", str(cuda), "--db", str(db)]).returncode == 0
    report = _run(["-m", "harness", "report", "--db", str(db), "--out", str(tmp_path / "report")])
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    differences = summary.split("## Largest CPU-against-CUDA accuracy differences")[1].split("##")[0]
    rows = [line for line in differences.splitlines() if line.startswith("| ") and "loss" not in line]
    assert rows[0].startswith("| mse | torch | native | float32 | eager | typical | 100 |"), differences
    assert all("| 1000 |" not in row for row in rows)  # measured on a prefix there: not compared
    timed = _rows(out / "device.sqlite", "SELECT COUNT(*) FROM cells WHERE forward_seconds IS NOT NULL")[0][0]
    speed = summary.split("## CPU against CUDA: throughput")[1]
    assert timed and speed.count("| 1000 |") == timed
    assert r"cuda run \(run 2\): torch" in summary and r"memory bandwidth limit \(cuda\)" in summary
