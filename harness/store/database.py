"""SQLite results store: one row per run and one per cell, one per cell whose
gradient was measured, the bandwidth measured for each timed run, and the
conventions atlas (one row per loss, framework version, impl and dtype).

A cell is unique by what was measured (harness.store.rows.CellKey), so a rerun
of the same configuration finds what is already stored, and a sweep killed at
any point and rerun ends with every cell exactly once. Reads build typed rows;
a row that could not have been measured (a corrupted page) is named in
``complaints`` and not served.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.measure.bandwidth import StreamResult
from harness.measure.environment import Environment
from harness.store.rows import KEY_COLUMNS, BadRow, CellKey, CellRow, GradientRow, Measured, Stored, row_columns
from harness.store.schema import SCHEMA, SCHEMA_VERSION, upgrade

DEFAULT_DB = Path("reports/results.sqlite")
_ORDER = "ORDER BY loss, framework, impl, dtype, device, regime, size, width, seed"


class StoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class Run:
    id: int
    started: float
    ended: float | None
    status: str
    config: dict[str, Any]
    environment: Environment


@dataclass(frozen=True)
class StoredKeys:
    """What a sweep finds stored: cells (-> whether a timed sweep has nothing left
    to do there: timed, or not ok) and the cells whose gradient is stored."""

    cells: dict[CellKey, bool]
    gradients: set[CellKey]


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.complaints: list[str] = []  # rows read back that cannot be right, by table and id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        found = self._version()
        if found is not None and not 1 <= found <= SCHEMA_VERSION:
            self.db.close()
            raise StoreError(f"{self.path} has schema version {found}, this lossbench reads {SCHEMA_VERSION}")
        if found != SCHEMA_VERSION:
            self._create_or_upgrade()

    def _create_or_upgrade(self) -> None:
        """One transaction: a store killed while it is being created or upgraded is
        left as it was, never half upgraded (the tables are rebuilt in an upgrade).
        The version is read again under the lock: another process may have done it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            found = self._version()
            for statement in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(statement)
            if found is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif found < SCHEMA_VERSION:
                upgrade(self.db, found)
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def _version(self) -> int | None:
        try:
            found = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # a new file: no meta table yet
            return None
        return None if found is None else int(found[0])

    def close(self) -> None:
        self.db.close()

    def start_run(self, config: dict[str, Any], environment: Environment) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (started, status, config, environment) VALUES (?, 'running', ?, ?)",
                                  (time.time(), json.dumps(config, sort_keys=True), json.dumps(environment.to_json())))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET ended = ?, status = ? WHERE id = ?", (time.time(), status, run_id))

    def stored_keys(self) -> StoredKeys:
        keys = ", ".join(KEY_COLUMNS)
        cells = {CellKey(*row[:-1]): bool(row[-1]) for row in self.db.execute(
            f"SELECT {keys}, status != 'ok' OR forward_seconds IS NOT NULL FROM cells")}
        gradients = {CellKey(*row) for row in self.db.execute(f"SELECT {keys} FROM gradients")}
        return StoredKeys(cells, gradients)

    def add(self, run_id: int, rows: Sequence[Measured]) -> int:
        """Insert value or gradient rows, each into its table under its own conflict
        rule (CellRow.ON_CONFLICT, GradientRow.ON_CONFLICT). Returns how many rows
        were added or completed."""
        changed = 0
        for row_type in {type(r) for r in rows}:
            own = row_columns(row_type)
            columns = ["run_id", *KEY_COLUMNS, *own, "created"]
            updates = ", ".join(f"{c} = excluded.{c}" for c in ["run_id", *own, "created"])
            sql = (f"INSERT INTO {row_type.TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                   f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) {row_type.ON_CONFLICT.format(updates=updates)}")
            now = time.time()
            values = [(run_id, *asdict(r.key).values(), *(getattr(r, c) for c in own), now)
                      for r in rows if type(r) is row_type]
            with self.db:
                before = self.db.total_changes
                self.db.executemany(sql, values)
                changed += self.db.total_changes - before
        return changed

    def _read(self, row_type: type[Measured], sql: str, extra: Sequence[str] = ()) -> Iterator[Stored]:
        """Typed rows of ``sql`` (id, run_id, key, row columns, then ``extra``)."""
        own = row_columns(row_type)
        for values in self.db.execute(sql):
            row_id, run_id = values[0], values[1]
            key, rest = values[2:2 + len(KEY_COLUMNS)], values[2 + len(KEY_COLUMNS):]
            try:
                row = row_type(CellKey(*key), **dict(zip(own, rest[:len(own)])))
            except (BadRow, TypeError) as exc:
                self.complaints.append(f"{row_type.TABLE} row {row_id} cannot be right and is skipped: {exc}")
                continue
            yield Stored(run_id, row, tuple(zip(extra, rest[len(own):])))

    def cells(self) -> Iterator[Stored]:
        columns = ", ".join(["id", "run_id", *KEY_COLUMNS, *row_columns(CellRow)])
        return self._read(CellRow, f"SELECT {columns} FROM cells {_ORDER}")

    def gradients(self) -> Iterator[Stored]:
        """Gradient rows, each with its cell's forward max_ulp (null if the cell is not stored) for comparison."""
        keys = " AND ".join(f"c.{k} = g.{k}" for k in KEY_COLUMNS)
        columns = ", ".join(f"g.{c}" for c in ["id", "run_id", *KEY_COLUMNS, *row_columns(GradientRow)])
        order = _ORDER.replace("BY ", "BY g.").replace(", ", ", g.")
        return self._read(GradientRow, f"SELECT {columns}, c.max_ulp FROM gradients g LEFT JOIN cells c ON {keys} "
                                       f"{order}", extra=("forward_max_ulp",))

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

    def runs(self) -> list[Run]:
        cur = self.db.execute("SELECT id, started, ended, status, config, environment FROM runs ORDER BY id")
        return [Run(r[0], r[1], r[2], r[3], json.loads(r[4]), Environment.from_json(json.loads(r[5]))) for r in cur]

    def quarantined(self) -> list[dict[str, Any]]:
        """Rows an upgrade found impossible and set aside, with the constraint each breaks."""
        cur = self.db.execute("SELECT source, source_id, row, reason FROM quarantine ORDER BY id")
        return [{"source": s, "source_id": i, "row": json.loads(r), "reason": why} for s, i, r, why in cur]


@contextmanager
def open_store(path: Path | str) -> Iterator[Store]:
    store = Store(path)
    try:
        yield store
    finally:
        store.close()
