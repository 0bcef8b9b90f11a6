"""SQLite results store: a versioned schema, one row per run and one per cell,
one per cell whose gradient was measured, the bandwidth measured for each timed
run, and the conventions atlas (one row per loss, framework version, impl and
dtype).

A cell is unique by what was measured (loss, params, framework and its version,
impl, dtype, device, regime, size, width, seed), so a rerun of the same
configuration finds what is already stored, and a sweep killed at any point and
rerun ends with every cell exactly once.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.bandwidth import StreamResult

# 2 added the atlas table; 3 the timing columns of cells and the bandwidth table;
# 4 the gradients table.
SCHEMA_VERSION = 4
DEFAULT_DB = Path("reports/results.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    {key_columns},
    status TEXT NOT NULL, error TEXT, result_dtype TEXT,
    items INTEGER, items_measured INTEGER,
    max_ulp REAL, p99_ulp REAL, median_ulp REAL, max_rel REAL,
    nonfinite TEXT, unexpected_nonfinite INTEGER,
    reduced_value REAL, reduced_reference REAL, reduced_ulp REAL, reduced_rel REAL, reduced_nonfinite TEXT,
    ref_unsettled INTEGER, seconds REAL, created REAL NOT NULL,
    {timing_columns},
    UNIQUE ({key_names})
);
CREATE TABLE IF NOT EXISTS gradients (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    {key_columns},
    {gradient_columns},
    created REAL NOT NULL,
    UNIQUE ({key_names})
);
CREATE TABLE IF NOT EXISTS bandwidth (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    framework TEXT NOT NULL, device TEXT NOT NULL, kernel TEXT NOT NULL,
    elements INTEGER NOT NULL, bytes_moved INTEGER NOT NULL,
    best_seconds REAL NOT NULL, median_seconds REAL NOT NULL, gbps REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS atlas (
    id INTEGER PRIMARY KEY,
    loss TEXT NOT NULL, framework TEXT NOT NULL, framework_version TEXT NOT NULL,
    impl TEXT NOT NULL, dtype TEXT NOT NULL,
    entry TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (loss, framework, framework_version, impl, dtype)
);
"""
# Timing of a cell's default-reduction call (forward) and of its gradient with
# respect to input (backward); null where the cell was not timed, or (backward)
# where the impl has no gradient. See harness.timing and harness.bandwidth.
TIMING_COLUMNS = {
    "forward_seconds": "REAL",  # median seconds per call
    "forward_stdev": "REAL",
    "forward_loops": "INTEGER",  # calls per sample
    "forward_samples": "INTEGER",
    "forward_bytes": "INTEGER",  # minimum bytes moved per call
    "elements_per_s": "REAL",
    "forward_gbps": "REAL",
    "forward_bw_fraction": "REAL",
    "backward_method": "TEXT",  # how the gradient was taken; 'none': forward only
    "backward_error": "TEXT",  # the gradient call raised (the forward figures stand)
    "backward_seconds": "REAL",
    "backward_stdev": "REAL",
    "backward_loops": "INTEGER",
    "backward_bytes": "INTEGER",
    "backward_gbps": "REAL",
    "backward_bw_fraction": "REAL",
    "bandwidth_limit_gbps": "REAL",  # the device's measured limit the fractions use
}
_SCHEMA = _SCHEMA.replace("{timing_columns}", ",\n    ".join(f"{k} {v}" for k, v in TIMING_COLUMNS.items()))
# Versions whose stores only lack what CREATE IF NOT EXISTS and added columns give.
_ADDITIVE_UPGRADES = {1, 2, 3}


@dataclass(frozen=True)
class CellKey:
    loss: str
    params: str  # canonical JSON
    framework: str
    framework_version: str
    impl: str
    dtype: str
    device: str
    regime: str
    size: int
    width: int
    seed: int


@dataclass(frozen=True)
class _Measured:
    """What value and gradient rows share: the cell, its status, and the error
    summary over what could be measured."""

    key: CellKey
    status: str
    error: str | None = None
    result_dtype: str | None = None
    max_ulp: float | None = None
    p99_ulp: float | None = None
    median_ulp: float | None = None
    max_rel: float | None = None
    nonfinite: str | None = None  # JSON counts per class
    unexpected_nonfinite: int | None = None
    ref_unsettled: int | None = None


@dataclass(frozen=True)
class CellRow(_Measured):
    """One measured cell. ``status`` is ok, error (the framework raised), timeout,
    or crashed (the worker died); metrics are null unless status is ok.
    Element metrics summarise reduction 'none' over settled, finite items;
    ``reduced_*`` is the loss's default reduction (the mean; the sum for
    penalties) against that reduction's own reference."""

    items: int | None = None
    items_measured: int | None = None
    reduced_value: float | None = None
    reduced_reference: float | None = None
    reduced_ulp: float | None = None
    reduced_rel: float | None = None
    reduced_nonfinite: str | None = None
    seconds: float | None = None
    forward_seconds: float | None = None
    forward_stdev: float | None = None
    forward_loops: int | None = None
    forward_samples: int | None = None
    forward_bytes: int | None = None
    elements_per_s: float | None = None
    forward_gbps: float | None = None
    forward_bw_fraction: float | None = None
    backward_method: str | None = None
    backward_error: str | None = None
    backward_seconds: float | None = None
    backward_stdev: float | None = None
    backward_loops: int | None = None
    backward_bytes: int | None = None
    backward_gbps: float | None = None
    backward_bw_fraction: float | None = None
    bandwidth_limit_gbps: float | None = None


@dataclass(frozen=True)
class GradientRow(_Measured):
    """The gradient of one cell's default-reduction loss with respect to input, per
    input element against the reference derivative. ``status`` is ok, error (the
    gradient raised), no_gradient (the impl has none), timeout or crashed. Metrics
    summarise the elements that have a derivative, a settled reference and a finite
    result; ``undefined`` counts the elements where the loss has no derivative (a
    corner: frameworks return a subgradient there, which is not judged)."""

    reduction: str | None = None
    method: str | None = None
    elements: int | None = None
    elements_measured: int | None = None
    undefined: int | None = None


_KEY_COLUMNS = [f.name for f in fields(CellKey)]
_ROW_COLUMNS = [f.name for f in fields(CellRow) if f.name != "key"]
_GRADIENT_COLUMNS = [f.name for f in fields(GradientRow) if f.name != "key"]
_SQL_TYPES = {"str | None": "TEXT", "int | None": "INTEGER", "float | None": "REAL", "str": "TEXT NOT NULL"}
_SCHEMA = _SCHEMA.replace("{key_columns}", ", ".join(
    f"{f.name} {'INTEGER' if f.type == 'int' else 'TEXT'} NOT NULL" for f in fields(CellKey)))
_SCHEMA = _SCHEMA.replace("{key_names}", ", ".join(_KEY_COLUMNS))
_SCHEMA = _SCHEMA.replace("{gradient_columns}", ",\n    ".join(
    f"{f.name} {_SQL_TYPES[str(f.type)]}" for f in fields(GradientRow) if f.name != "key"))


class StoreError(RuntimeError):
    pass


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        found = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) in _ADDITIVE_UPGRADES:
            present = {row[1] for row in self.db.execute("PRAGMA table_info(cells)")}
            with self.db:
                for column, kind in TIMING_COLUMNS.items():
                    if column not in present:
                        self.db.execute(f"ALTER TABLE cells ADD COLUMN {column} {kind}")
                self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        elif int(found[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {found[0]}, this lossbench reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def start_run(self, config: dict[str, Any], environment: dict[str, Any]) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (started, status, config, environment) VALUES (?, 'running', ?, ?)",
                                  (time.time(), json.dumps(config, sort_keys=True), json.dumps(environment)))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET ended = ?, status = ? WHERE id = ?", (time.time(), status, run_id))

    def existing_keys(self) -> dict[CellKey, bool]:
        """Stored cells -> whether the cell is done for a timed sweep too (timed, or
        not ok, so there is nothing to time)."""
        rows = self.db.execute(f"SELECT {', '.join(_KEY_COLUMNS)}, status != 'ok' OR forward_seconds IS NOT NULL "
                               "FROM cells")
        return {CellKey(*row[:-1]): bool(row[-1]) for row in rows}

    def add_cells(self, run_id: int, rows: Iterable[CellRow]) -> int:
        """Insert rows; a cell already stored is left as it is, unless it was untimed
        and the new row is timed. Returns how many rows were added or completed."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in ["run_id", *_ROW_COLUMNS, "created"])
        return self._insert("cells", run_id, _ROW_COLUMNS, rows,
                            f"DO UPDATE SET {updates} "
                            "WHERE cells.forward_seconds IS NULL AND excluded.forward_seconds IS NOT NULL")

    def _insert(self, table: str, run_id: int, row_columns: list[str], rows: Iterable[CellRow | GradientRow],
                on_conflict: str) -> int:
        """Insert rows of a table keyed by CellKey; how many rows changed."""
        columns = ["run_id", *_KEY_COLUMNS, *row_columns, "created"]
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
               f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) {on_conflict}")
        now = time.time()
        values = [(run_id, *asdict(r.key).values(), *(getattr(r, c) for c in row_columns), now) for r in rows]
        with self.db:
            before = self.db.total_changes
            self.db.executemany(sql, values)
            return self.db.total_changes - before

    def existing_gradient_keys(self) -> set[CellKey]:
        return {CellKey(*row) for row in self.db.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM gradients")}

    def add_gradients(self, run_id: int, rows: Iterable[GradientRow]) -> int:
        """Insert gradient rows; one already stored is left as it is. Returns how many were added."""
        return self._insert("gradients", run_id, _GRADIENT_COLUMNS, rows, "DO NOTHING")

    def gradients(self) -> Iterator[dict[str, Any]]:
        """Gradient rows, each with its cell's forward max_ulp (null if the cell is not stored) for comparison."""
        keys = " AND ".join(f"c.{k} = g.{k}" for k in _KEY_COLUMNS)
        cur = self.db.execute(
            f"SELECT g.run_id, {', '.join('g.' + k for k in _KEY_COLUMNS)}, "
            f"{', '.join('g.' + c for c in _GRADIENT_COLUMNS)}, c.max_ulp AS forward_max_ulp "
            f"FROM gradients g LEFT JOIN cells c ON {keys} "
            "ORDER BY g.loss, g.framework, g.impl, g.dtype, g.device, g.regime, g.size, g.width, g.seed")
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row))

    def cells(self) -> Iterator[dict[str, Any]]:
        cur = self.db.execute(f"SELECT run_id, {', '.join(_KEY_COLUMNS)}, {', '.join(_ROW_COLUMNS)} FROM cells "
                              "ORDER BY loss, framework, impl, dtype, device, regime, size, width, seed")
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row))

    def add_bandwidth(self, run_id: int, results: Iterable[StreamResult]) -> None:
        """Store a run's STREAM results."""
        with self.db:
            self.db.executemany(
                "INSERT INTO bandwidth (run_id, framework, device, kernel, elements, bytes_moved, best_seconds, "
                "median_seconds, gbps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.framework, r.device, r.kernel, r.elements, r.bytes_moved, r.best_seconds,
                  r.median_seconds, r.gbps) for r in results])

    def bandwidth(self, run_id: int | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        cur = self.db.execute(f"SELECT run_id, framework, device, kernel, elements, bytes_moved, best_seconds, "
                              f"median_seconds, gbps FROM bandwidth {where} ORDER BY run_id, device, framework, kernel",
                              args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def put_atlas(self, entry: dict[str, Any]) -> None:
        """Store one atlas entry (AtlasEntry.to_json()), replacing an older one of the same key."""
        key = [entry[k] for k in ("loss", "framework", "framework_version", "impl", "dtype")]
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO atlas (loss, framework, framework_version, impl, dtype, entry, "
                            "created) VALUES (?, ?, ?, ?, ?, ?, ?)", (*key, json.dumps(entry), time.time()))

    def atlas(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT entry FROM atlas ORDER BY loss, framework, impl, dtype, framework_version")
        return [json.loads(row[0]) for row in cur]

    def runs(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT id, started, ended, status, config, environment FROM runs ORDER BY id")
        return [{"id": r[0], "started": r[1], "ended": r[2], "status": r[3], "config": json.loads(r[4]),
                 "environment": json.loads(r[5])} for r in cur]


@contextmanager
def open_store(path: Path | str) -> Iterator[Store]:
    store = Store(path)
    try:
        yield store
    finally:
        store.close()
