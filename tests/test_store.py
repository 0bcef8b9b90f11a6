"""The SQLite store: schema round trip, uniqueness, versioning."""
from __future__ import annotations

import multiprocessing
import sqlite3
import struct
import time
from dataclasses import asdict

import pytest

from harness.measure.bandwidth import StreamResult
from harness.measure.environment import Environment
from harness.store import (
    SCHEMA_VERSION, TIMING_COLUMNS, BadRow, CellKey, CellRow, GradientRow, Store, StoreError, open_store,
)
from harness.store.schema import RUN_PROCESS_COLUMNS, table_sql

KEY = CellKey("mse", "{}", "numpy", "2.0", "naive", "float32", "cpu", "typical", 100, 1, 0)
NO_ENV = Environment({})


def test_round_trip(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({"sizes": [100]}, Environment({"cpu": "test"}))
    row = CellRow(KEY, "ok", result_dtype="float32", items=100, items_measured=99, max_ulp=1.5, p99_ulp=1.0,
                  median_ulp=0.25, max_rel=1e-7, nonfinite='{"expected_inf": 1}', unexpected_nonfinite=0,
                  reduced_value=0.5, reduced_reference=0.5, reduced_ulp=0.0, reduced_rel=0.0, ref_unsettled=0,
                  seconds=0.01)
    assert store.add(run, [row]) == [row]
    store.end_run(run, "complete")
    (stored,) = list(store.cells())
    assert {k: stored[k] for k in asdict(KEY)} == asdict(KEY)
    assert {k: stored[k] for k in asdict(row) if k != "key"} == {k: v for k, v in asdict(row).items() if k != "key"}
    (r,) = store.runs()
    assert r.status == "complete" and r.config == {"sizes": [100]} and r.environment["cpu"] == "test"
    store.close()


def test_a_cell_is_stored_once(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({}, NO_ENV)
    assert len(store.add(run, [CellRow(KEY, "ok"), CellRow(KEY, "error", error="again")])) == 1
    assert store.add(run, [CellRow(KEY, "ok")]) == []
    assert len(list(store.cells())) == 1 and store.stored_keys().cells == {KEY: False}  # ok but untimed
    store.close()


def test_a_timed_row_completes_an_untimed_one_once(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({}, NO_ENV)
    store.add(run, [CellRow(KEY, "ok", max_ulp=1.0)])
    timed = CellRow(KEY, "ok", max_ulp=1.0, forward_seconds=2e-6, forward_bytes=800, backward_method="none")
    assert store.add(run, [timed]) == [timed]
    assert store.add(run, [CellRow(KEY, "ok", max_ulp=1.0, forward_seconds=9.0)]) == []
    (stored,) = list(store.cells())
    assert stored["forward_seconds"] == 2e-6 and stored["forward_bytes"] == 800
    assert store.stored_keys().cells == {KEY: True}
    failed = CellKey(*(asdict(KEY) | {"seed": 1}).values())
    store.add(run, [CellRow(failed, "error", error="raised")])
    assert store.stored_keys().cells[failed] is True  # nothing to time in a failed cell
    store.close()


def test_bandwidth_round_trip(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({}, NO_ENV)
    result = StreamResult("numpy", "cpu", "triad", 1000, best_seconds=2.4e-6, median_seconds=3e-6)
    store.add_bandwidth(run, [result])
    (row,) = store.bandwidth(run)
    assert row["bytes_moved"] == 3 * 8 * 1000 and row["gbps"] == pytest.approx(24_000 / 2.4e-6 / 1e9)
    assert store.bandwidth(run + 1) == []
    store.close()


def _stored_as_version(path, version: int, max_ulp: float = 3.0) -> int:
    """A store holding one cell, rewritten into what schema ``version`` had; returns its run id.
    1: runs, cells without timing columns, meta. 2: the atlas too. 3: timing columns and the
    bandwidth table. 4: the gradients table. 5: CHECKs and the quarantine table. 6: the
    runs' process columns and the lost table. 7: the mode in the key and the compile times.
    (8 added bits of error.)"""
    with open_store(path) as store:
        run = store.start_run({}, NO_ENV)
        store.add(run, [CellRow(KEY, "ok", max_ulp=max_ulp)])
    db = sqlite3.connect(path)

    def gone(column: str) -> bool:
        return (version < 8 and column.endswith("_bits")) or \
            (version < 7 and (column == "mode" or column.startswith("compile_")))

    def mentions_gone(line: str) -> bool:  # a column's definition, or a CHECK on it
        return any(gone(word.strip("()")) for word in line.split())

    with db:
        for table in ("cells", "gradients", "lost"):
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
            if version < 7:  # the mode left the key
                sql = sql.replace(",\n    mode TEXT NOT NULL", "").replace(", mode TEXT NOT NULL", "")
                sql = sql.replace(", mode)", ")")
            sql = ",\n".join(line for line in sql.split(",\n") if not mentions_gone(line))
            columns = ", ".join(c[1] for c in db.execute(f"PRAGMA table_info({table})") if not gone(c[1]))
            db.execute(f"ALTER TABLE {table} RENAME TO keyed_{table}")
            db.execute(sql)
            db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM keyed_{table}")
            db.execute(f"DROP TABLE keyed_{table}")
        for table in ("cells", "gradients") if version < 5 else ():  # the same columns without CHECK constraints
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
            db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
            db.execute(",\n".join(line for line in sql.split(",\n") if "CHECK (" not in line))
            db.execute(f"INSERT INTO {table} SELECT * FROM old_{table}")
            db.execute(f"DROP TABLE old_{table}")
        if version < 6:
            for column, _ in RUN_PROCESS_COLUMNS:
                db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
            db.execute("DROP TABLE lost")
        dropped = ["quarantine"] * (version < 5) + ["gradients"] * (version < 4) + ["bandwidth"] * (version < 3) + \
            ["atlas"] * (version < 2)
        for table in dropped:
            db.execute(f"DROP TABLE {table}")
        if version < 3:
            for column in TIMING_COLUMNS:
                if column not in ("compile_cold_seconds", "compile_warm_seconds"):
                    db.execute(f"ALTER TABLE cells DROP COLUMN {column}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.close()  # checkpoints the WAL: the file alone is the store
    return run


def _version(store: Store) -> str:
    return store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]


def test_version_1_store_is_upgraded_in_place(tmp_path) -> None:
    _stored_as_version(tmp_path / "r.sqlite", 1, max_ulp=2.0)
    with open_store(tmp_path / "r.sqlite") as store:
        assert [r["max_ulp"] for r in store.cells()] == [2.0] and store.atlas() == []
        assert _version(store) == str(SCHEMA_VERSION)


def test_version_2_store_gains_the_timing_columns(tmp_path) -> None:
    _stored_as_version(tmp_path / "r.sqlite", 2)
    with open_store(tmp_path / "r.sqlite") as store:
        (row,) = list(store.cells())
        assert row["max_ulp"] == 3.0 and row["forward_seconds"] is None
        assert store.bandwidth() == []
        assert _version(store) == str(SCHEMA_VERSION)


def test_version_3_store_gains_the_gradients_table(tmp_path) -> None:
    _stored_as_version(tmp_path / "r.sqlite", 3)
    with open_store(tmp_path / "r.sqlite") as store:
        assert [r["max_ulp"] for r in store.cells()] == [3.0] and list(store.gradients()) == []
        run = store.start_run({}, NO_ENV)
        assert len(store.add(run, [GradientRow(KEY, "ok", max_ulp=5.0)])) == 1
        assert store.add(run, [GradientRow(KEY, "ok", max_ulp=7.0)]) == []  # stored once
        (row,) = store.gradients()
        assert (row["max_ulp"], row["forward_max_ulp"]) == (5.0, 3.0)
        assert store.stored_keys().gradients == {KEY}


def test_version_4_store_gains_checks_and_quarantines_impossible_rows(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    run = _stored_as_version(path, 4)
    bad_key = {k: v for k, v in {**KEY.__dict__, "seed": 1}.items() if k != "mode"}  # version 4 had no mode
    columns = ", ".join(["run_id", *bad_key, "status", "max_ulp", "created"])
    insert_bad = f"INSERT INTO cells ({columns}) VALUES (?, {', '.join('?' * len(bad_key))}, 'ok', -2.2, 0)"
    with sqlite3.connect(path) as db:  # version 4 had no constraint against it
        db.execute(insert_bad, (run, *bad_key.values()))
    with open_store(path) as store:
        assert [r["max_ulp"] for r in store.cells()] == [3.0] and _version(store) == str(SCHEMA_VERSION)
        (bad,) = store.quarantined()
        assert bad["source"] == "cells" and bad["row"]["max_ulp"] == -2.2 and "max_ulp" in bad["reason"]
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            with store.db:
                store.db.execute(insert_bad.replace("created)", "created, mode)").replace("0)", "0, 'eager')"),
                                 (run, *bad_key.values()))


def test_version_5_store_gains_run_processes_and_the_lost_table(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    run = _stored_as_version(path, 5)
    with sqlite3.connect(path) as db:  # a run of version 5 knows no process: it is left as it is
        db.execute("UPDATE runs SET status = 'running'")
    with open_store(path) as store:
        assert _version(store) == str(SCHEMA_VERSION)
        assert {r.id: r.status for r in store.runs()} == {run: "running"}
        assert store.count_lost(run, KEY, "killed by SIGKILL") == 1
        assert store.count_lost(run, KEY, "killed by SIGKILL") == 2
        store.add(run, [GradientRow(KEY, "ok")])  # a stored row forgets the losses of its cell
        assert store.db.execute("SELECT count(*) FROM lost").fetchone()[0] == 0


def test_version_6_store_gains_the_mode_in_every_key(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    run = _stored_as_version(path, 6)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO lost (run_id, loss, params, framework, framework_version, impl, dtype, device, "
                   "regime, size, width, seed, reason, times, created) VALUES (?, 'mse', '{}', 'numpy', '2.0', "
                   "'naive', 'float32', 'cpu', 'typical', 100, 1, 0, 'killed by SIGKILL', 1, 0)", (run,))
    with open_store(path) as store:
        assert _version(store) == str(SCHEMA_VERSION)
        (cell,) = store.cells()
        assert cell["mode"] == "eager" and cell["max_ulp"] == 3.0 and cell["compile_cold_seconds"] is None
        assert store.count_lost(run, KEY, "killed by SIGKILL") == 2  # the old row, now keyed eager
        compiled = CellKey(*(asdict(KEY) | {"mode": "compiled"}).values())
        assert len(store.add(run, [CellRow(compiled, "ok", max_ulp=5.0)])) == 1  # a new cell beside the eager one
        assert {r["mode"]: r["max_ulp"] for r in store.cells()} == {"eager": 3.0, "compiled": 5.0}


def test_version_7_store_gains_bits_of_error(tmp_path) -> None:
    """Older rows keep NULL bits; new rows store them."""
    path = tmp_path / "r.sqlite"
    run = _stored_as_version(path, 7)
    with sqlite3.connect(path) as db:
        assert "max_bits" not in {c[1] for c in db.execute("PRAGMA table_info(cells)")}
    with open_store(path) as store:
        assert _version(store) == str(SCHEMA_VERSION)
        (cell,) = store.cells()
        assert cell["max_ulp"] == 3.0 and cell["max_bits"] is None and cell["reduced_bits"] is None
        other = CellKey(*(asdict(KEY) | {"size": 7}).values())
        store.add(run, [CellRow(other, "ok", max_ulp=1.0, max_bits=1.0, reduced_bits=0.0),
                        GradientRow(other, "ok", max_ulp=2.0, max_bits=1.58)])
        assert sorted((r["size"], r["max_bits"]) for r in store.cells()) == [(7, 1.0), (KEY.size, None)]
        assert [g["max_bits"] for g in store.gradients()] == [1.58]
    with sqlite3.connect(path) as db:  # the added columns keep the rows' constraints
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE cells SET max_bits = -1")


@pytest.mark.parametrize("version", [5, 7])
def test_merging_an_older_store_upgrades_a_copy_and_leaves_it_as_it_was(tmp_path, version: int) -> None:
    """`lossbench merge` reads a store of an earlier schema through an upgraded copy:
    its file is not touched, and its cell lands in the target under a run of its own."""
    from harness.present.cli import main

    old = tmp_path / "old.sqlite"
    _stored_as_version(old, version)
    before = old.read_bytes()
    with open_store(tmp_path / "r.sqlite") as store:
        store.add(store.start_run({}, NO_ENV), [CellRow(CellKey(*(asdict(KEY) | {"size": 7}).values()), "ok")])
    assert main(["merge", str(old), "--db", str(tmp_path / "r.sqlite")]) == 0
    assert old.read_bytes() == before
    with open_store(tmp_path / "r.sqlite") as store:
        assert sorted((r["run_id"], r["size"], r["max_ulp"]) for r in store.cells()) == [(1, 7, None),
                                                                                        (2, KEY.size, 3.0)]
        assert [run.status for run in store.runs()] == ["running", "interrupted"]  # never ended: copied interrupted


def test_other_schema_version_is_refused(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_impossible_rows_are_refused_on_write() -> None:
    with pytest.raises(BadRow, match="max_ulp"):
        CellRow(KEY, "ok", max_ulp=-2.2)
    with pytest.raises(BadRow, match="items_measured"):
        CellRow(KEY, "ok", items=10, items_measured=11)
    with pytest.raises(BadRow, match="status"):
        GradientRow(KEY, "finished")
    with pytest.raises(BadRow, match="negative"):
        GradientRow(KEY, "ok", undefined=-1)


def test_a_flipped_bit_in_the_file_is_named_not_served(tmp_path) -> None:
    """SQLite keeps no checksums: flip the sign bit of a stored max_ulp in the file
    itself, and the read names the row instead of serving -1.23 ulp."""
    path = tmp_path / "r.sqlite"
    value = 1.2345678901234567  # not integral: stored as an 8-byte big-endian double
    with open_store(path) as store:
        run = store.start_run({}, NO_ENV)
        store.add(run, [CellRow(KEY, "ok", max_ulp=value), GradientRow(KEY, "ok", max_ulp=1.0)])
    assert not path.with_name("r.sqlite-wal").exists()  # closing checkpointed the WAL into the file
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack(">d", value))
    assert at >= 0 and data.find(struct.pack(">d", value), at + 1) == -1
    data[at] ^= 0x80
    path.write_bytes(bytes(data))
    with open_store(path) as store:
        assert list(store.cells()) == []
        (complaint,) = store.complaints
        assert "cells row 1" in complaint and "max_ulp = -1.23" in complaint
        assert [g["max_ulp"] for g in store.gradients()] == [1.0]


def _open_at(path: str, start: float) -> int:
    time.sleep(max(0.0, start - time.time()))
    with open_store(path) as store:
        return int(store.db.execute("SELECT value FROM meta").fetchone()[0])


def test_processes_creating_one_store_at_once_all_open_it(tmp_path) -> None:
    """Two processes open each new store at the same moment, 30 times: the first
    one's switch to WAL used to make the other fail with "database is locked"."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(time.sleep, [0.0, 0.0])  # both workers started
        for round_ in range(30):
            path, start = str(tmp_path / f"r{round_}.sqlite"), time.time() + 0.05
            assert pool.starmap(_open_at, [(path, start)] * 2, chunksize=1) == [SCHEMA_VERSION] * 2


def test_schema_is_generated_from_the_rows() -> None:
    sql = table_sql(CellRow)
    assert all(column in sql for column in TIMING_COLUMNS)
    assert "CHECK (max_ulp IS NULL OR max_ulp >= 0)" in sql and "items_measured <= items" in sql


def test_a_merge_killed_midway_leaves_nothing_and_the_next_one_brings_everything(tmp_path) -> None:
    """A real SIGKILL of `lossbench merge` while it writes 40000 rows: the target
    holds the whole source run or none of it, and merging again completes it once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source, target = tmp_path / "source.sqlite", tmp_path / "target.sqlite"
    with open_store(source) as store:
        run = store.start_run({}, NO_ENV)
        store.add(run, [CellRow(CellKey(*(asdict(KEY) | {"size": n}).values()), "ok", max_ulp=1.0)
                        for n in range(1, 40001)])
        store.end_run(run, "complete")
    Store(target).close()
    merge = [sys.executable, "-m", "harness", "merge", str(source), "--db", str(target)]
    proc = subprocess.Popen(merge, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wal = target.with_name(target.name + "-wal")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not (wal.exists() and wal.stat().st_size > 2**16):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_store(target) as store:
        assert len(list(store.cells())) in (0, 40000) and len(store.runs()) in (0, 1)
    again = subprocess.run(merge, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    with open_store(target) as store:
        assert sorted(r["size"] for r in store.cells()) == list(range(1, 40001))
        assert [r.status for r in store.runs()] == ["complete"]
