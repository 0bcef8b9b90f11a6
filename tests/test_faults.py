"""Faults injected for real, each answered as the README's fault table says:
unusable store files (left untouched), a read-only mount, a file another user
cannot write, a full disk (a small tmpfs), a symlink planted in the report
folder, Markdown in stored strings, workers that die while idle or cannot start."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.measure.environment import Environment
from harness.present import report
from harness.present.cli import main
from harness.running.workers import WorkerPool, _Queue
from harness.store import SCHEMA_VERSION, CellKey, CellRow, open_store

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def _lossbench(*args: str, user: int | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """lossbench in a real process; ``user``: as that unprivileged user (root ignores file modes)."""
    command = [sys.executable, "-m", "harness", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), LOSSBENCH_DISABLE="torch,tensorflow", **env))


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _small_store(path: Path) -> None:
    """A store with a few cells as a sweep stores them, timed, one with Markdown in its strings."""
    with open_store(path) as store:
        run = store.start_run({"sizes": [10]}, Environment({"cpu": "<b>cpu</b> | *fast*"}))
        rows = [CellRow(CellKey("mse", "{}", "numpy", "2", impl, "float32", "cpu", "typical", 10, 1, 0), "ok",
                        items=10, items_measured=10, max_ulp=ulp, p99_ulp=ulp, median_ulp=0.5, max_rel=1e-7,
                        nonfinite="{}", unexpected_nonfinite=0, reduced_ulp=0.5, forward_seconds=1e-6,
                        elements_per_s=1e7, backward_method="none")
                for impl, ulp in (("naive", 1.0), ("a|b*c_[x](y)", 3.0))]
        store.add(run, rows)
        store.end_run(run, "complete")


@contextmanager
def _mounted(size: str = "4m") -> Iterator[Path]:
    """A real tmpfs of ``size`` (needs root: skipped where mounting is not allowed)."""
    folder = Path(tempfile.mkdtemp(prefix="lossbench-mount-"))
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def _remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


# --- files that are no usable store: exit 2, one line naming the path, file unchanged ----------

def _sql(path: Path, *statements: str | tuple[str, tuple]) -> None:
    """Run statements on the file with plain sqlite3, and close it (checkpointing the WAL)."""
    db = sqlite3.connect(path)
    with db:
        for statement in statements:
            db.execute(*(statement if isinstance(statement, tuple) else (statement,)))
    db.close()


def _text_file(path: Path) -> None:
    path.write_text("loss,max_ulp\nmse,1\n")


def _truncated(path: Path) -> None:
    _small_store(path)
    _sql(path, "CREATE TABLE filler (x)",  # enough pages that cutting the file loses some
         *[("INSERT INTO filler VALUES (?)", ("x" * 1000,))] * 200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _malformed(path: Path) -> None:
    _small_store(path)
    data = bytearray(path.read_bytes())
    data[4096 + 8: 4096 + 200] = os.urandom(192)  # the second page's cells: garbage
    path.write_bytes(bytes(data))


def _foreign_with_meta(path: Path) -> None:
    _sql(path, "CREATE TABLE meta (name TEXT, content TEXT)", "CREATE TABLE photos (id INTEGER PRIMARY KEY, file TEXT)",
         "INSERT INTO meta VALUES ('owner', 'somebody else')")


def _version_word(path: Path) -> None:
    _small_store(path)
    _sql(path, "UPDATE meta SET value = 'five' WHERE key = 'schema_version'")


def _newer(path: Path) -> None:
    _small_store(path)
    _sql(path, ("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)))


UNUSABLE = {
    "a directory": (lambda p: p.mkdir(), "is a directory"),
    "a text file": (_text_file, "is not an SQLite file"),
    "a truncated store": (_truncated, "is a damaged SQLite file"),
    "a malformed store": (_malformed, "damaged SQLite file"),
    "a foreign database with its own meta table": (_foreign_with_meta, "not a lossbench results store"),
    "a non-integer schema_version": (_version_word, "schema_version 'five', not an integer"),
    "a newer schema": (_newer, f"has schema version {SCHEMA_VERSION + 1}"),
}


@pytest.mark.parametrize("command", ["results", "sweep"])
@pytest.mark.parametrize("make, message", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_an_unusable_store_is_refused_with_exit_2_and_left_as_it_was(tmp_path: Path, make, message: str,
                                                                      command: str) -> None:
    path = tmp_path / "r.sqlite"
    make(path)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    args = ["--loss", "mse", "--framework", "numpy", "--sizes", "10", "--no-progress"] if command == "sweep" else []
    proc = _lossbench(command, "--db", str(path), *args)
    assert proc.returncode == 2
    line = _one_line(proc)
    assert str(path) in line and message in line
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_an_older_store_is_read_only_after_a_writing_command_upgrades_it(tmp_path: Path) -> None:
    from test_store import _stored_as_version
    path = tmp_path / "r.sqlite"
    _stored_as_version(path, 4)
    before = path.read_bytes()
    proc = _lossbench("results", "--db", str(path))
    assert proc.returncode == 2 and "a writing command (lossbench sweep) upgrades it" in _one_line(proc)
    assert path.read_bytes() == before


# --- read-only places and other users' files --------------------------------------------------

def test_reading_commands_work_on_a_read_only_mount(tmp_path: Path) -> None:
    with _mounted() as mount:
        _small_store(mount / "r.sqlite")
        _remount_read_only(mount)
        results = _lossbench("results", "--db", str(mount / "r.sqlite"), "--format", "json")
        assert results.returncode == 0, results.stderr
        assert {r["impl"] for r in json.loads(results.stdout)} == {"naive", "a|b*c_[x](y)"}
        shown = _lossbench("report", "--db", str(mount / "r.sqlite"), "--out", str(tmp_path / "out"))
        assert shown.returncode == 0, shown.stderr
        chosen = _lossbench("recommend", "--loss", "mse", "--max-ulp", "2", "--db", str(mount / "r.sqlite"),
                            "--json")
        assert chosen.returncode == 0 and json.loads(chosen.stdout)["choice"]["impl"] == "naive"
        written = _lossbench("sweep", "--loss", "mse", "--framework", "numpy", "--sizes", "10", "--no-progress",
                             "--db", str(mount / "r.sqlite"))
        assert written.returncode == 3
        assert "Read-only file system" in _one_line(written) and str(mount / "r.sqlite") in written.stderr
        out = _lossbench("report", "--db", str(tmp_path / "nowhere.sqlite"), "--out", str(mount / "report"))
        assert out.returncode == 2 and "cannot be made: Read-only file system" in _one_line(out)


def test_a_store_the_user_cannot_write_is_read_and_not_written(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run lossbench as another user")
    probe = _lossbench("list", "losses", user=NOBODY)
    if probe.returncode != 0:
        pytest.skip(f"the unprivileged user cannot run this checkout: {probe.stderr.strip()[-200:]}")
    folder = Path(tempfile.mkdtemp(prefix="lossbench-other-"))
    try:
        folder.chmod(0o755)  # root's folder and file: the unprivileged user may read, not write
        _small_store(folder / "r.sqlite")
        (folder / "r.sqlite").chmod(0o644)
        before = (folder / "r.sqlite").read_bytes()
        results = _lossbench("results", "--db", str(folder / "r.sqlite"), "--format", "json", user=NOBODY)
        assert results.returncode == 0, results.stderr
        assert len(json.loads(results.stdout)) == 2
        written = _lossbench("sweep", "--loss", "mse", "--framework", "numpy", "--sizes", "10", "--no-progress",
                             "--db", str(folder / "r.sqlite"), user=NOBODY)
        assert written.returncode == 3 and "Permission denied" in _one_line(written)
        assert (folder / "r.sqlite").read_bytes() == before
        assert not list(folder.glob("r.sqlite-*")), "no lock or journal files left in the user's folder"
    finally:
        shutil.rmtree(folder)


# --- a full disk ------------------------------------------------------------------------------

def test_a_full_disk_while_writing_the_reference_cache_frees_the_space_and_says_why() -> None:
    with _mounted("1m") as mount:
        refcache = mount / "refcache"
        refcache.mkdir()
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        stale = refcache / f"mse-float64-typical-old.{gone.pid}.tmp.npz"  # a dead process's partial file
        stale.write_bytes(b"\0" * 1000)
        proc = _lossbench("sweep", "--loss", "mse", "--framework", "numpy", "--impl", "naive", "--dtype", "float64",
                          "--regime", "typical", "--sizes", "100000", "--jobs", "1", "--no-progress",
                          "--db", str(mount / "r.sqlite"))
        assert proc.returncode == 3, proc.stderr
        line = _one_line(proc)
        assert "No space left on device" in line and str(refcache) in line and ".npz" in line
        assert list(refcache.iterdir()) == [], "partial files are removed (the stale one too)"
        with open_store(mount / "r.sqlite", writable=False) as store:
            assert [r.status for r in store.runs()] == ["interrupted"]


# --- the report's folder ----------------------------------------------------------------------

def test_report_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    _small_store(tmp_path / "r.sqlite")
    victim = tmp_path / "important.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").symlink_to(victim)
    (out / "summary.md").symlink_to(victim)
    assert main(["report", "--db", str(tmp_path / "r.sqlite"), "--out", str(out)]) == 0
    assert victim.read_text() == "keep me"
    assert not (out / "index.html").is_symlink() and "<html>" in (out / "index.html").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file left"


@pytest.mark.parametrize("where, message", [("file", "is a file, not a folder"),
                                            ("file/below", "is under a file")])
def test_report_out_that_is_no_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str,
                                              message: str) -> None:
    _small_store(tmp_path / "r.sqlite")
    (tmp_path / "file").write_text("a file")
    code = main(["report", "--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_summary_markdown_escapes_what_the_store_holds(tmp_path: Path) -> None:
    _small_store(tmp_path / "r.sqlite")
    assert main(["report", "--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "out")]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert report.markdown_text("a|b*c_[x](y)") == r"a\|b\*c\_\[x\]\(y\)"
    assert r"| a\|b\*c\_\[x\]\(y\) |" in summary and "a|b*c" not in summary
    assert r"\<b\>cpu\</b\> \| \*fast\*" in summary and "<b>" not in summary
    rows = [line for line in summary.splitlines() if line.startswith("| mse")]
    assert len(rows) == 2 and all(line.count(" | ") == len(report.WORST_COLUMNS) - 1 for line in rows)


# --- workers ----------------------------------------------------------------------------------

def test_a_worker_killed_while_idle_is_replaced() -> None:
    with WorkerPool(1) as pool:
        assert [r for _, r in pool.run(abs, [-1])] == [1]
        (worker,) = pool.workers
        worker.process.kill()  # a real SIGKILL while it waits for its next task
        worker.process.join(10)
        assert [r for _, r in pool.run(abs, [-2, -3])] == [2, 3]


def test_a_worker_keeps_to_its_group_then_takes_a_fresh_one_then_shares_the_largest_left() -> None:
    queue = _Queue([("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("a", 4), ("b", 2)], lambda task: task[0])
    one, two = SimpleNamespace(group=None), SimpleNamespace(group=None)
    taken = [queue.pop(w) for w in (one, two, one, two, two, two, one)]
    # b done, two starts c, which nobody had; then none is fresh and two shares a, the largest left.
    assert taken == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", 1), ("a", 3), ("a", 4)]
    assert len(queue) == 0
    with WorkerPool(2) as pool:  # grouped tasks all run, once each
        assert sorted(r for _, r in pool.run(abs, range(-9, 0), group=lambda task: task % 3)) == list(range(1, 10))


def test_a_worker_that_cannot_start_is_the_environment_exit_3(tmp_path: Path) -> None:
    script = ("import multiprocessing, sys; multiprocessing.set_executable('/nonexistent/python'); "
              "from harness.present.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script, "sweep", "--loss", "mse", "--framework", "numpy",
                           "--sizes", "10", "--no-progress", "--db", str(tmp_path / "r.sqlite")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 3
    assert "no worker process could be started: /nonexistent/python exited with code" in _one_line(proc)


def test_an_internal_error_exits_70(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                    tmp_path: Path) -> None:
    _small_store(tmp_path / "r.sqlite")

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr("harness.present.render.print_rows", broken)
    code = main(["results", "--db", str(tmp_path / "r.sqlite")])
    err = capsys.readouterr().err
    assert code == 70 and "internal error: ZeroDivisionError: a bug" in err and len(err.strip().splitlines()) == 1
