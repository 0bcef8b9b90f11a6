"""The SQLite store: schema round trip, uniqueness, versioning."""
from __future__ import annotations

import sqlite3
from dataclasses import asdict

import pytest

from harness.store import CellKey, CellRow, Store, StoreError

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
    assert len(list(store.cells())) == 1 and store.existing_keys() == {KEY}
    store.close()


def test_other_schema_version_is_refused(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)
