"""The SQLite store: schema round trip, uniqueness, versioning."""
from __future__ import annotations

import sqlite3
from dataclasses import asdict

import pytest

from harness.bandwidth import StreamResult
from harness.store import (
    SCHEMA_VERSION, TIMING_COLUMNS, CellKey, CellRow, GradientRow, Store, StoreError, open_store,
)

KEY = CellKey("mse", "{}", "numpy", "2.0", "naive", "float32", "cpu", "typical", 100, 1, 0)


def test_round_trip(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({"sizes": [100]}, {"cpu": "test"})
    row = CellRow(KEY, "ok", result_dtype="float32", items=100, items_measured=99, max_ulp=1.5, p99_ulp=1.0,
                  median_ulp=0.25, max_rel=1e-7, nonfinite='{"expected_inf": 1}', unexpected_nonfinite=0,
                  reduced_value=0.5, reduced_reference=0.5, reduced_ulp=0.0, reduced_rel=0.0, ref_unsettled=0,
                  seconds=0.01)
    assert store.add_cells(run, [row]) == 1
    store.end_run(run, "complete")
    (stored,) = list(store.cells())
    assert {k: stored[k] for k in asdict(KEY)} == asdict(KEY)
    assert {k: stored[k] for k in asdict(row) if k != "key"} == {k: v for k, v in asdict(row).items() if k != "key"}
    (r,) = store.runs()
    assert r["status"] == "complete" and r["config"] == {"sizes": [100]} and r["environment"]["cpu"] == "test"
    store.close()


def test_a_cell_is_stored_once(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({}, {})
    assert store.add_cells(run, [CellRow(KEY, "ok"), CellRow(KEY, "error", error="again")]) == 1
    assert store.add_cells(run, [CellRow(KEY, "ok")]) == 0
    assert len(list(store.cells())) == 1 and store.existing_keys() == {KEY: False}  # ok but untimed
    store.close()


def test_a_timed_row_completes_an_untimed_one_once(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({}, {})
    store.add_cells(run, [CellRow(KEY, "ok", max_ulp=1.0)])
    timed = CellRow(KEY, "ok", max_ulp=1.0, forward_seconds=2e-6, forward_bytes=800, backward_method="none")
    assert store.add_cells(run, [timed]) == 1
    assert store.add_cells(run, [CellRow(KEY, "ok", max_ulp=1.0, forward_seconds=9.0)]) == 0
    (stored,) = list(store.cells())
    assert stored["forward_seconds"] == 2e-6 and stored["forward_bytes"] == 800
    assert store.existing_keys() == {KEY: True}
    failed = CellKey(*(asdict(KEY) | {"seed": 1}).values())
    store.add_cells(run, [CellRow(failed, "error", error="raised")])
    assert store.existing_keys()[failed] is True  # nothing to time in a failed cell
    store.close()


def test_bandwidth_round_trip(tmp_path) -> None:
    store = Store(tmp_path / "r.sqlite")
    run = store.start_run({}, {})
    result = StreamResult("numpy", "cpu", "triad", 1000, best_seconds=2.4e-6, median_seconds=3e-6)
    store.add_bandwidth(run, [result])
    (row,) = store.bandwidth(run)
    assert row["bytes_moved"] == 3 * 8 * 1000 and row["gbps"] == pytest.approx(24_000 / 2.4e-6 / 1e9)
    assert store.bandwidth(run + 1) == []
    store.close()


def test_version_2_store_gains_the_timing_columns(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    store = Store(path)
    store.add_cells(store.start_run({}, {}), [CellRow(KEY, "ok", max_ulp=3.0)])
    store.close()
    with sqlite3.connect(path) as db:  # make it what version 2 wrote
        for column in TIMING_COLUMNS:
            db.execute(f"ALTER TABLE cells DROP COLUMN {column}")
        db.execute("DROP TABLE bandwidth")
        db.execute("DROP TABLE gradients")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with open_store(path) as store:
        (row,) = list(store.cells())
        assert row["max_ulp"] == 3.0 and row["forward_seconds"] is None
        assert store.bandwidth() == []
        assert store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION)


def test_version_3_store_gains_the_gradients_table(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    store = Store(path)
    store.add_cells(store.start_run({}, {}), [CellRow(KEY, "ok", max_ulp=3.0)])
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE gradients")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with open_store(path) as store:
        assert [r["max_ulp"] for r in store.cells()] == [3.0] and list(store.gradients()) == []
        run = store.start_run({}, {})
        assert store.add_gradients(run, [GradientRow(KEY, "ok", max_ulp=5.0)]) == 1
        assert store.add_gradients(run, [GradientRow(KEY, "ok", max_ulp=7.0)]) == 0  # stored once
        (row,) = store.gradients()
        assert (row["max_ulp"], row["forward_max_ulp"]) == (5.0, 3.0)
        assert store.existing_gradient_keys() == {KEY}


def test_other_schema_version_is_refused(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)
