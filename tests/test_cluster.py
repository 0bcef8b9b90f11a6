"""Sweeps on a real Dask cluster: a LocalCluster of two worker processes, and a
scheduler and workers started from the `dask` command line on localhost. The
stored rows equal a local run's; a worker killed mid-sweep by a real signal
loses and duplicates nothing; a worker running other code is refused."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.running.cluster import differences, environment_versions

ROOT = Path(__file__).resolve().parents[1]
# The test adapter whose implementations raise, crash, hang or sleep (tests/support).
FAULTY = {"PYTHONPATH": str(ROOT), "LOSSBENCH_ADAPTERS": "faulty=tests.support.faulty_adapter"}
DASK = str(Path(sys.executable).parent / "dask")
SWEEP = ["sweep", "--loss", "mse", "bce", "cross_entropy", "--framework", "numpy", "--dtype", "float32",
         "bfloat16", "--regime", "typical", "edge", "--sizes", "10", "100", "--jobs", "2", "--no-progress"]
# Measured values (timings and run ids differ between runs; the measured numbers must not).
COMPARED = ("loss", "framework", "impl", "dtype", "regime", "size", "mode", "status", "result_dtype", "max_ulp",
            "p99_ulp", "median_ulp", "max_rel", "max_bits", "nonfinite", "unexpected_nonfinite", "ref_unsettled",
            "items", "items_measured", "reduced_value", "reduced_reference", "reduced_ulp", "reduced_bits")


def _lossbench(*argv: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env or dict(os.environ))


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(f"SELECT {', '.join(COMPARED)} FROM cells").fetchall(), key=repr)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("local") / "r.sqlite"
    proc = _lossbench(*SWEEP, "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    return db


def test_a_local_cluster_stores_what_the_local_pool_stores(local_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    proc = _lossbench(*SWEEP, "--scheduler", "local", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "Dask: 2 workers at tcp://" in proc.stdout and "dashboard http" in proc.stdout
    assert _rows(db) == _rows(local_store)
    assert len(_rows(db)) == 3 * 2 * 2 * 2 * 2  # losses x dtypes x regimes x sizes x impls
    again = _lossbench(*SWEEP, "--db", str(db))  # a local rerun finds everything stored
    assert again.returncode == 0 and "0 stored now" in again.stdout


@pytest.fixture()
def command_line_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A `dask scheduler` and two `dask worker` processes on localhost: (address, workers)."""
    file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", **FAULTY}  # workers start children
    scheduler = subprocess.Popen([DASK, "scheduler", "--scheduler-file", str(file), "--port", "0",
                                  "--dashboard-address", ":0"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    processes = [scheduler]
    try:
        for _ in range(100):
            if file.exists() and file.read_text().strip():
                break
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--name", f"w{k}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                    start_new_session=True, cwd=ROOT) for k in range(2)]
        processes += workers
        _wait_for_workers(address, 2)
        yield address, workers
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        client.wait_for_workers(count, timeout=120)


def test_a_command_line_cluster_stores_what_the_local_pool_stores_and_survives_a_killed_worker(
        command_line_cluster: tuple[str, list[subprocess.Popen]], local_store: Path, tmp_path: Path) -> None:
    """A real SIGKILL of one `dask worker` process while the sweep runs: Dask runs its
    tasks on the other, and the store ends with every cell once, as a local run's."""
    address, workers = command_line_cluster
    db = tmp_path / "r.sqlite"
    sweep = subprocess.Popen([sys.executable, "-m", "harness", *SWEEP, "--scheduler", address, "--db", str(db)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _wait_for_a_row(sweep, db, "runs")  # the sweep has started measuring
    os.kill(workers[0].pid, signal.SIGKILL)
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err
    assert workers[0].wait(10) == -signal.SIGKILL
    assert _rows(db) == _rows(local_store)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM lost").fetchone()[0] == 0


def _wait_for_a_row(sweep: subprocess.Popen, db: Path, table: str) -> None:
    """Until the sweep's store has a row in ``table`` (or the sweep ends, or 5 minutes pass)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sweep.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]:
                        return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)


def _sweep_until_stored(argv: list[str], db: Path, env: dict) -> subprocess.Popen:
    """A sweep started in the background, returned once its first cell is stored."""
    sweep = subprocess.Popen([sys.executable, "-m", "harness", *argv, "--db", str(db)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    _wait_for_a_row(sweep, db, "cells")
    assert sweep.poll() is None, "the sweep finished before it could be killed"
    return sweep


DTYPES, SIZES = ("float32", "float16", "bfloat16", "float64"), (10, 100, 1000, 10000)


def test_a_client_killed_mid_sweep_resumes_on_the_cluster_with_nothing_lost_or_duplicated(
        command_line_cluster: tuple[str, list[subprocess.Popen]], tmp_path: Path) -> None:
    """A real SIGKILL of the `lossbench sweep` client while the cluster works for it;
    the same command run again against the same scheduler completes the sweep."""
    address, _ = command_line_cluster
    db = tmp_path / "r.sqlite"
    argv = ["sweep", "--loss", "mse", "--framework", "faulty", "--impl", "slow", "--dtype", *DTYPES, "--sizes",
            *map(str, SIZES), "--no-progress", "--scheduler", address]
    env = {**os.environ, **FAULTY}
    sweep = _sweep_until_stored(argv, db, env)
    sweep.kill()
    assert sweep.wait(10) == -signal.SIGKILL
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    again = _lossbench(*argv, "--db", str(db), env=env)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT dtype, regime, size, status FROM cells").fetchall()
        runs = [status for (status,) in conn.execute("SELECT status FROM runs ORDER BY id")]
    regimes = {regime for _, regime, _, _ in keys}
    assert len(keys) == len(set(keys)) == len(DTYPES) * len(regimes) * len(SIZES), "lost or duplicated cells"
    assert 0 < before < len(keys) and {status for *_, status in keys} == {"ok"}
    assert f"{before} already stored, {len(keys) - before} stored now" in again.stdout
    assert runs == ["interrupted", "complete"]


def test_cell_timeout_and_cell_faults_hold_on_a_cluster(tmp_path: Path) -> None:
    """On Dask workers as in the local pool: a hanging cell ends at --cell-timeout, a
    crashing one names its signal, a raising one its exception, and the sweep goes on."""
    db = tmp_path / "r.sqlite"
    proc = _lossbench("sweep", "--loss", "mse", "--framework", "faulty", "--impl", "ok", "raises", "crashes",
                      "hangs", "--dtype", "float32", "--regime", "typical", "--sizes", "10", "--cell-timeout", "2",
                      "--jobs", "2", "--no-progress", "--scheduler", "local", "--db", str(db),
                      env={**os.environ, **FAULTY})
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as conn:
        status = dict((impl, (status, error)) for impl, status, error in
                      conn.execute("SELECT impl, status, error FROM cells"))
    assert status["ok"][0] == "ok"
    assert status["raises"] == ("error", "RuntimeError: deliberate failure inside the framework")
    assert status["crashes"] == ("crashed", "the worker process was killed by SIGSEGV")
    assert status["hangs"] == ("timeout", "exceeded the 2 s cell limit")


def test_a_worker_running_other_code_is_refused(command_line_cluster: tuple[str, list[subprocess.Popen]],
                                                tmp_path: Path) -> None:
    """A third worker started from a copy of the code with one edited file: named,
    refused before any task, and the sweep runs on the two that match."""
    address, _ = command_line_cluster
    copy = tmp_path / "copy"
    for folder in ("harness", "reference"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "reference" / "formulas.py").open("a") as file:
        file.write("\n# an edit this worker has and the client has not\n")
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", "PYTHONPATH": str(copy)}
    other = subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--name", "edited"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                             cwd=copy)
    try:
        _wait_for_workers(address, 3)
        proc = _lossbench("sweep", "--loss", "mse", "--framework", "numpy", "--dtype", "float32", "--regime",
                          "typical", "--sizes", "10", "--no-progress", "--scheduler", address, "--db",
                          str(tmp_path / "r.sqlite"))
        assert proc.returncode == 0, proc.stderr
        refused = [line for line in proc.stdout.splitlines() if "refused" in line]
        assert len(refused) == 1 and "code " in refused[0], proc.stdout
        assert "Dask: 2 workers" in proc.stdout
    finally:
        os.killpg(other.pid, signal.SIGTERM)
        other.wait(20)


def test_no_matching_worker_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker differs: exit 2, one line naming each refused worker."""
    from harness.running import cluster

    monkeypatch.setattr(cluster, "environment_versions", lambda: {"lossbench": "client-only"})
    from harness.present.cli import main

    assert main(["sweep", "--loss", "mse", "--framework", "numpy", "--dtype", "float32", "--regime", "typical",
                 "--sizes", "10", "--no-progress", "--scheduler", "local", "--jobs", "1",
                 "--db", str(tmp_path / "r.sqlite")]) == 2


def test_versions_name_what_differs() -> None:
    mine = environment_versions()
    assert {"lossbench", "numpy", "torch", "code"} <= set(mine)
    assert differences(mine, {**mine, "torch": "0.0"}) == [f"torch 0.0 (client {mine['torch']})"]
    assert differences(mine, mine) == []
