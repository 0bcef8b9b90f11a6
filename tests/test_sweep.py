"""Sweeps end to end: planned cells all stored, a failing framework isolated,
resume after SIGKILL with nothing lost or duplicated, invalid filters refused."""
from __future__ import annotations

import contextlib
import html
import itertools
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.model import registry
from harness.measure import timing
from harness.present.cli import main
from harness.measure.evaluate import evaluate_gradient
from harness.measure.refcache import ReferenceCache
from harness.measure.refsets import InputSet
from harness.model.spec import Case
from harness.store import open_store
from harness.running.sweep import SweepConfig, run_sweep

ROOT = Path(__file__).resolve().parent.parent
FAULTY = "faulty=tests.support.faulty_adapter"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOSSBENCH_ADAPTERS=FAULTY, **extra)
    return env


def _lossbench(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=300, **kwargs)


def _rows(db: Path) -> list[dict]:
    with open_store(db) as store:
        return list(store.cells())


def test_small_sweep_stores_every_planned_cell_and_resumes(tmp_path: Path) -> None:
    losses, dtypes, regimes_, sizes = ("mse", "cross_entropy"), ("float32", "bfloat16"), ("typical", "edge"), (10, 100)
    config = SweepConfig(losses=losses, frameworks=("numpy",), impls=None, dtypes=dtypes, devices=("cpu",),
                         regimes=regimes_, sizes=sizes, widths=(10,), seeds=1, jobs=2)
    with open_store(tmp_path / "r.sqlite") as store:
        report = run_sweep(config, store, ReferenceCache(tmp_path / "refcache"))
        # Counted independently: numpy has naive and stable for every loss.
        expected = {(l, i, d, r, n) for l, i, d, r, n in itertools.product(losses, ("naive", "stable"), dtypes,
                                                                            regimes_, sizes)}
        rows = list(store.cells())
        assert {(r["loss"], r["impl"], r["dtype"], r["regime"], r["size"]) for r in rows} == expected
        assert report.planned == report.stored == len(expected) == len(rows)
        assert all(r["status"] == "ok" for r in rows)
        for r in rows:
            if r["max_ulp"] is not None:
                assert 0 <= r["median_ulp"] <= r["p99_ulp"] <= r["max_ulp"]
            assert r["items"] == (r["size"] if r["loss"] == "mse" else r["size"] // 10)
        edge = [r for r in rows if r["regime"] == "edge" and r["loss"] == "mse"]
        assert any(json.loads(r["nonfinite"]) for r in edge), "edge inputs produce non-finite classes"
        again = run_sweep(config, store, ReferenceCache(tmp_path / "refcache"))
        assert (again.skipped, again.stored, again.reference_sets) == (len(expected), 0, 0)
        assert len(store.runs()) == 2


@pytest.mark.parametrize("timed", [False, True])
def test_failing_framework_does_not_stop_the_sweep(tmp_path: Path, timed: bool) -> None:
    """Timed, a cell whose values fail is stored as that failure and never timed
    (its values are measured first); the others are timed."""
    db = tmp_path / "r.sqlite"
    proc = _lossbench("sweep", "--loss", "mse", "--framework", "faulty", "numpy", "--dtype", "float32",
                      "--regime", "typical", "--sizes", "10", "100", "--impl", "ok", "raises", "crashes", "hangs",
                      "stable", "--cell-timeout", "2", "--jobs", "2", "--db", str(db), "--no-progress",
                      *(["--time"] if timed else []))
    assert proc.returncode == 0, proc.stderr
    rows = _rows(db)
    status = {(r["impl"], r["size"]): (r["status"], r["error"]) for r in rows}
    for size in (10, 100):
        assert status[("ok", size)][0] == "ok"
        assert status[("stable", size)][0] == "ok"
        assert status[("raises", size)] == ("error", "RuntimeError: deliberate failure inside the framework")
        assert status[("crashes", size)] == ("crashed", "the worker process was killed by SIGSEGV")
        assert status[("hangs", size)][0] == "timeout"
    assert len(status) == 10
    assert all((r["forward_seconds"] is not None) == (timed and r["status"] == "ok") for r in rows)


def _kill_waiting_worker(args: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """Run a sweep whose 'waits' cell writes its worker's pid into ``folder``, and
    kill that worker with SIGKILL from outside, as the OOM killer would."""
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.pid"):
        old.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, text=True,
                            env=_env(FAULTY_WAIT_DIR=str(folder)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(folder.glob("*.pid")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    (pidfile,) = folder.glob("*.pid")
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_worker_killed_from_outside_is_measured_again_and_stored_crashed_the_second_time(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    args = ["sweep", "--loss", "mse", "--framework", "faulty", "--impl", "ok", "waits", "--dtype", "float32",
            "--regime", "typical", "--sizes", "10", "--jobs", "1", "--db", str(db), "--no-progress"]
    first = _kill_waiting_worker(args, tmp_path / "pids")
    assert first.returncode == 3, first.stderr
    assert "1 cells lost to a signal from outside, not stored: the worker process was killed by SIGKILL" \
        in first.stderr
    assert {r["impl"]: r["status"] for r in _rows(db)} == {"ok": "ok"}  # the lost cell is not a result
    with open_store(db) as store:
        assert [r.status for r in store.runs()] == ["incomplete"]
    second = _kill_waiting_worker(args, tmp_path / "pids")  # measured again, and killed again
    assert second.returncode == 0, second.stderr
    assert "1 stored now (1 crashed)" in second.stdout
    status = {r["impl"]: (r["status"], r["error"]) for r in _rows(db)}
    assert status["waits"] == ("crashed", "the worker process was killed by SIGKILL (on 2 runs)")
    assert "2 already stored, 0 stored now" in _lossbench(*args).stdout  # stored crashed: not measured again
    retried = _lossbench(*args, "--retry-failed")  # without FAULTY_WAIT_DIR the cell computes
    assert retried.returncode == 0, retried.stderr
    assert "1 stored now (1 ok)" in retried.stdout
    assert {r["impl"]: r["status"] for r in _rows(db)} == {"ok": "ok", "waits": "ok"}


class _TruncatingCache(ReferenceCache):
    """Saves each entry, then really cuts the file in half, as a dying disk would."""

    def save(self, inputset, quantity, reference) -> None:  # noqa: ANN001
        super().save(inputset, quantity, reference)
        path = self.path(inputset, quantity)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_cell_lost_to_a_broken_reference_is_not_stored_and_measured_next_time(tmp_path: Path) -> None:
    config = SweepConfig(losses=("mse",), frameworks=("numpy",), impls=("naive",), dtypes=("float32",),
                         devices=("cpu",), regimes=("typical",), sizes=(10, 100), widths=(10,), jobs=1)
    with open_store(tmp_path / "r.sqlite") as store:
        broken = run_sweep(config, store, _TruncatingCache(tmp_path / "refcache"))
        assert broken.stored == 0 and list(store.cells()) == []
        ((reason, count),) = broken.lost_to_harness.items()
        assert count == 2 and "EntryInvalid" in reason and "unreadable" in reason
        cache = ReferenceCache(tmp_path / "refcache")
        again = run_sweep(config, store, cache)
        assert again.stored == 2 and not again.lost_to_harness and len(cache.discarded) == 1
        assert [r["status"] for r in store.cells()] == ["ok", "ok"]
        assert [r.status for r in store.runs()] == ["incomplete", "complete"]


def _killed_once_stored(args: list[str], db: Path, where: str = "1") -> int:
    """Run a sweep and, once ``db`` holds a cell row matching ``where``, kill its whole
    process group with SIGKILL (no chance to clean up). Returns how many rows matched
    then. The polling connection is read-only and closed after every look: one left
    open in this process can read a later run's file as malformed."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    found = 0
    while time.monotonic() < deadline and proc.poll() is None and not found:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                found = con.execute(f"SELECT count(*) FROM cells WHERE {where}").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return found


def test_resume_after_sigkill_while_timing_times_every_cell_once(tmp_path: Path) -> None:
    """Killed while the timing worker runs: the rows timed so far stand, and the
    next run measures and times the others, once each."""
    db = tmp_path / "r.sqlite"
    args = ["sweep", "--loss", "mse", "--framework", "faulty", "--impl", "slow", "--dtype", "float32", "float16",
            "float64", "--regime", "typical", "edge", "--sizes", "10", "100", "1000", "10000", "--time", "--jobs", "1",
            "--db", str(db), "--no-progress"]
    assert _killed_once_stored(args, db, "forward_seconds IS NOT NULL")
    rows = _rows(db)
    assert 0 < len([r for r in rows if r["forward_seconds"] is not None]) < 12  # rows commit once a second
    assert not [r for r in rows if r["regime"] == "typical" and r["forward_seconds"] is None]  # none stored untimed
    finished = _lossbench(*args)
    assert finished.returncode == 0, finished.stderr
    rows = _rows(db)
    keys = [(r["dtype"], r["regime"], r["size"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24 and all(r["status"] == "ok" for r in rows)
    assert all((r["forward_seconds"] is not None) == (r["regime"] == "typical") for r in rows)


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    args = ["sweep", "--loss", "mse", "--framework", "faulty", "--impl", "slow", "--dtype", "float32", "float16",
            "--sizes", "10", "100", "1000", "--jobs", "1", "--db", str(db), "--no-progress"]
    spec = registry.get("mse")
    expected = {(d, r, n) for d in ("float32", "float16") for r in spec.regimes for n in (10, 100, 1000)}
    stored = _killed_once_stored(args, db)
    assert 0 < stored < len(expected)
    finished = _lossbench(*args)
    assert finished.returncode == 0, finished.stderr
    rows = _rows(db)
    keys = [(r["dtype"], r["regime"], r["size"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated cells"
    assert set(keys) == expected, "lost cells"
    assert all(r["status"] == "ok" for r in rows)
    with open_store(db) as store:  # the killed parent's run, left 'running', was found gone
        assert [r.status for r in store.runs()] == ["interrupted", "complete"]


def test_timed_sweep_records_speed_and_completes_untimed_cells(tmp_path: Path, capsys) -> None:
    base = dict(losses=("mse",), frameworks=("numpy",), impls=None, dtypes=("float32",), devices=("cpu",),
                regimes=("typical", "edge"), sizes=(10, 1000), widths=(10,), seeds=1, jobs=2)
    cache = ReferenceCache(tmp_path / "refcache")
    with open_store(tmp_path / "r.sqlite") as store:
        run_sweep(SweepConfig(**base), store, cache)  # untimed first
        report = run_sweep(SweepConfig(**base, time=True), store, cache)
        rows = list(store.cells())
        assert len(rows) == 8 and report.stored == report.timed == 4  # the typical cells were completed
        limit = max(b["gbps"] for b in store.bandwidth(report.run_id))
        assert report.bandwidth_limits == {"cpu": limit}
        for r in rows:
            if r["regime"] != "typical":
                assert r["forward_seconds"] is None
                continue
            assert r["backward_method"] == "numpy analytic"  # mse's gradient is the same simple formula in both
            assert r["backward_seconds"] > 0
            assert r["forward_bytes"] == 2 * 4 * r["size"] + 4  # input and target read, the mean written
            assert r["elements_per_s"] == r["size"] / r["forward_seconds"]
            assert r["forward_gbps"] == r["forward_bytes"] / r["forward_seconds"] / 1e9
            assert r["bandwidth_limit_gbps"] == limit and r["forward_bw_fraction"] == r["forward_gbps"] / limit
            assert r["forward_samples"] == timing.DEFAULT_SAMPLES and r["forward_loops"] >= 1
        again = run_sweep(SweepConfig(**base, time=True), store, cache)
        assert (again.skipped, again.stored, again.bandwidth_limits) == (8, 0, {})
    assert main(["results", "--speed", "--db", str(tmp_path / "r.sqlite")]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:9] == ["loss", "framework", "impl", "dtype", "device", "regime", "size", "mode",
                                 "forward_seconds"]
    assert len(lines) == 4 and all(" typical " in line for line in lines)


def test_a_later_sweep_of_the_same_job_takes_the_bandwidth_limit_the_first_measured(tmp_path: Path) -> None:
    """As the main job's compiled sweep does: the limit is passed on, the later run
    stores no STREAM results of its own and its timed cells carry the first's limit."""
    base = dict(losses=("mse",), frameworks=("numpy",), impls=None, dtypes=("float32",), devices=("cpu",),
                regimes=("typical",), widths=(10,), seeds=1, jobs=2, time=True)
    cache = ReferenceCache(tmp_path / "refcache")
    limits: dict[str, float] = {}
    with open_store(tmp_path / "r.sqlite") as store:
        first = run_sweep(SweepConfig(**base, sizes=(10,)), store, cache, bandwidth_limits=limits)
        measured = max(b["gbps"] for b in store.bandwidth(first.run_id))
        assert limits == first.bandwidth_limits == {"cpu": measured}
        later = run_sweep(SweepConfig(**base, sizes=(100,)), store, cache, bandwidth_limits=limits)
        assert later.timed == 2 and later.bandwidth_limits == {"cpu": measured}
        assert store.bandwidth(later.run_id) == []
        assert {r["bandwidth_limit_gbps"] for r in store.cells() if r["size"] == 100} == {measured}


def test_gradient_sweep_completes_stored_cells_and_matches_a_direct_evaluation(tmp_path: Path) -> None:
    """Gradient rows are added to an ungraded store without touching its cells; the
    chunked set reference (shared prefixes, mean scaled per size) gives the same
    errors as evaluating one cell's gradient directly; corners and infinities are
    counted as undefined, not judged."""
    base = dict(losses=("mse", "focal"), frameworks=("numpy",), impls=None, dtypes=("float32",), devices=("cpu",),
                regimes=("typical", "edge"), sizes=(10, 100), widths=(10,), seeds=1, jobs=2)
    cache = ReferenceCache(tmp_path / "refcache")
    with open_store(tmp_path / "r.sqlite") as store:
        run_sweep(SweepConfig(**base), store, cache)
        for stale in cache.directory.glob("*.npz"):  # the cells are stored: their references are not needed again
            stale.unlink()
        report = run_sweep(SweepConfig(**base, grad=True), store, cache)
        graded = len(base["losses"]) * 2 * len(base["regimes"]) * len(base["sizes"])  # numpy: naive and stable
        assert (report.stored, report.gradients) == (0, graded)
        gradient_sets = len(base["losses"]) * len(base["regimes"]) * len(base["dtypes"])
        assert report.reference_sets == gradient_sets == len(list(cache.directory.glob("*-grad-*.npz")))
        assert len(list(cache.directory.glob("*.npz"))) == gradient_sets
        rows = {(g["loss"], g["impl"], g["regime"], g["size"]): g for g in store.gradients()}
        assert {k: g["status"] for k, g in rows.items() if g["status"] != "ok"} == {
            ("focal", "naive", r, n): "no_gradient" for r in ("typical", "edge") for n in (10, 100)}
        for g in rows.values():
            assert g["forward_max_ulp"] is not None or g["regime"] == "edge"  # the cell's own forward beside it
        spec = registry.get("mse")
        arrays = InputSet.with_defaults("mse", "float32", "edge").inputs(100)
        x, y = arrays["input"], arrays["target"]
        infinite = (np.isinf(x) | np.isinf(y)) & ~(np.isnan(x) | np.isnan(y))  # a nan makes the derivative nan
        assert rows[("mse", "stable", "edge", 100)]["undefined"] == int(infinite.sum()) > 0
        arrays = InputSet.with_defaults("mse", "float32", "typical").inputs(100)
        direct = evaluate_gradient(Case("mse", "numpy", "stable", "float32", reduction=spec.default_reduction),
                                   arrays)
        stored = rows[("mse", "stable", "typical", 100)]
        # The set's components come from the float64 pre-pass: exact to 1e-6 ulp (README).
        assert stored["max_ulp"] == pytest.approx(max(direct.ulp_errors), abs=1e-6)
        assert stored["elements_measured"] == stored["elements"] == 100
        again = run_sweep(SweepConfig(**base, grad=True), store, cache)
        assert (again.skipped, again.gradients, again.reference_sets) == (again.planned, 0, 0)


def _accuracy(db: Path) -> dict[tuple, tuple]:
    return {(r["loss"], r["dtype"], r["regime"], r["size"], r["impl"]): (r["status"], r["max_ulp"], r["reduced_ulp"])
            for r in _rows(db)}


CACHE_FAULTS = ["another set's entry", "truncated", "flipped byte", "empty"]


@pytest.mark.parametrize("fault", CACHE_FAULTS)
def test_a_bad_reference_cache_entry_is_named_deleted_and_computed_again(tmp_path: Path, fault: str) -> None:
    """A real file put in the cache under a set's name: another set's valid entry
    (copied as a user or a sync tool might), a truncated one, one with a byte flipped,
    an empty one. The sweep names it in one warning line, computes the reference
    again, and stores exactly what a sweep over a clean cache stores."""
    grid = ["sweep", "--loss", "mse", "--framework", "numpy", "--dtype", "float32", "--regime", "typical", "wide",
            "--sizes", "10", "100", "--no-progress", "--jobs", "1"]
    clean = _lossbench(*grid, "--db", str(tmp_path / "clean" / "r.sqlite"))
    assert clean.returncode == 0, clean.stderr
    cache = tmp_path / "clean" / "refcache"
    typical, wide = (next(cache.glob(f"mse-float32-{regime}-*.npz")) for regime in ("typical", "wide"))
    planted = tmp_path / "faulty" / "refcache" / typical.name
    planted.parent.mkdir(parents=True)
    data = typical.read_bytes()
    if fault == "another set's entry":
        planted.write_bytes(wide.read_bytes())
    elif fault == "truncated":
        planted.write_bytes(data[: len(data) // 2])
    elif fault == "flipped byte":
        position = len(data) // 3
        planted.write_bytes(data[:position] + bytes([data[position] ^ 0x40]) + data[position + 1:])
    else:
        planted.write_bytes(b"")
    run = _lossbench(*grid, "--db", str(tmp_path / "faulty" / "r.sqlite"))
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "reference cache entry" in line]
    assert len(warnings) == 1 and str(planted) in warnings[0] and "computed again" in warnings[0], run.stderr
    assert _accuracy(tmp_path / "faulty" / "r.sqlite") == _accuracy(tmp_path / "clean" / "r.sqlite")
    again = _lossbench(*grid, "--db", str(tmp_path / "faulty" / "r.sqlite"))  # the recomputed entry is good
    assert "reference cache entry" not in again.stderr


def test_two_sweeps_on_one_store_count_only_what_each_stored(tmp_path: Path) -> None:
    """Both measure every cell, one stores each first: the summaries add up to the
    cells, and each one's status counts match its own stored count."""
    db = tmp_path / "r.sqlite"
    args = ["sweep", "--loss", "mse", "--framework", "faulty", "--impl", "meets", "--dtype", "float32", "float16",
            "--regime", "typical", "edge", "--sizes", "10", "100", "--jobs", "1", "--db", str(db), "--no-progress"]
    (tmp_path / "meet").mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, text=True,
                              env=_env(FAULTY_MEET_DIR=str(tmp_path / "meet")),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in reversed(procs)][::-1]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    stored = []
    for out, _ in outputs:
        found = re.search(r"(\d+) stored now \((?:(\d+) ok|nothing new)\)", out)
        assert found, out
        stored.append(int(found.group(1)))
        assert "8 cells planned, 0 already stored" in out  # both ran at once: each measured every cell
        assert int(found.group(2) or 0) == stored[-1]
    assert sum(stored) == len(_rows(db)) == 8


def test_a_timed_cell_reduces_with_the_threads_of_the_untimed_ones(tmp_path: Path) -> None:
    """The timing worker runs every core's threads; torch splits a reduction of more
    than 32768 elements into a part per thread. A timed cell's value and gradient
    are measured with the other workers' threads, so a store holds one sweep's values
    whatever was timed: the same figures as an untimed sweep of the same cells, for
    every framework (which also checks Adapter.threads's word that NumPy, PyTensor,
    TensorFlow and JAX do not depend on the count)."""
    frameworks = ("numpy", "torch", "tensorflow", "jax", "pytensor")
    base = dict(losses=("mse", "bce_logits"), frameworks=frameworks, impls=None, dtypes=("float32",),
                devices=("cpu",), regimes=("typical",), sizes=(100_000,), widths=(10,), seeds=1, jobs=2, grad=True)
    value_fields = ("status", "reduced_value", "reduced_ulp", "max_ulp", "p99_ulp", "median_ulp", "max_rel",
                    "nonfinite", "items_measured")
    gradient_fields = ("status", "max_ulp", "p99_ulp", "median_ulp", "max_rel", "elements_measured")
    cache = ReferenceCache(tmp_path / "refcache")
    stored = {}
    for timed in (False, True):
        with open_store(tmp_path / f"{timed}.sqlite") as store:
            run_sweep(SweepConfig(**base, time=timed), store, cache)
            cells = list(store.cells())
            stored[timed] = {(r["loss"], r["framework"], r["impl"]): tuple(r[f] for f in value_fields) for r in cells}
            stored[timed, "gradient"] = {(g["loss"], g["framework"], g["impl"]): tuple(g[f] for f in gradient_fields)
                                         for g in store.gradients()}
            (run,) = store.runs()
        assert all(r["status"] == "ok" for r in cells)
        assert all((r["forward_seconds"] is not None) == timed for r in cells)
        threads = max(1, (os.cpu_count() or 1) // 2)
        assert (run.environment["threads_per_worker"], run.environment["value_threads"],
                run.environment["timing_threads"]) == (threads, threads, os.cpu_count() if timed else None)
    assert {framework for _, framework, _ in stored[True]} == set(frameworks)
    assert stored[True] == stored[False]
    assert stored[True, "gradient"].keys() == stored[True].keys()
    assert stored[True, "gradient"] == stored[False, "gradient"]


def test_a_loss_page_reproduces_its_worst_cell_with_the_threads_it_was_measured_with(tmp_path: Path,
                                                                                   capsys) -> None:
    """torch's sum of 1e5 squares rounds differently on one thread and on two: the
    command a loss page prints (`eval ... --threads N`) gives the stored value again,
    and the framework's own thread count (every core) need not."""
    db, out = tmp_path / "r.sqlite", tmp_path / "report"
    config = SweepConfig(losses=("l2_penalty",), frameworks=("torch",), impls=None, dtypes=("float32",),
                         devices=("cpu",), regimes=("typical",), sizes=(100_000,), widths=(10,), seeds=1, jobs=2)
    with open_store(db) as store:
        run_sweep(config, store, ReferenceCache(tmp_path / "refcache"))
        (row,) = store.cells()
        (run,) = store.runs()
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    page = (out / "loss" / "l2_penalty.html").read_text()
    command = re.search(r"<code>(lossbench eval [^<]*)</code>", page).group(1)
    assert f"--threads {run.environment['value_threads']}" in command
    capsys.readouterr()

    def evaluated(argv: list[str]) -> dict:
        main(argv)
        return json.loads(capsys.readouterr().out)

    argv = shlex.split(html.unescape(command))[1:]
    if "--reduction" in argv:  # the page asks for the items; the stored value is the reduction's
        at = argv.index("--reduction")
        del argv[at:at + 2]
    assert evaluated(argv)["value"] == row["reduced_value"]
    threads = argv.index("--threads")
    others = {evaluated(argv[:threads] + ["--threads", str(n)] + argv[threads + 2:])["value"] for n in (1, 2)}
    assert len(others) == 2, "one thread and two give different sums (else this test shows nothing)"
