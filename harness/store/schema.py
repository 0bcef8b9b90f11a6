"""The store's schema, generated from the row records, and its upgrades.

Versions: 2 added the atlas table; 3 the timing columns of cells and the
bandwidth table; 4 the gradients table; 5 CHECK constraints on cells and
gradients (rows that cannot happen are refused), with existing bad rows moved
to the quarantine table by the upgrade rather than failing it; 6 the host,
process id and process start time of each run (a run whose process is gone is
marked interrupted) and the lost table (cells whose worker an outside signal
killed, counted across runs: the second time such a cell is stored crashed); 7
the execution mode in every cell's key (eager or compiled; earlier rows were
eager) and the compile times of timed compiled cells; 8 bits of error
(max_bits of cells and gradients, reduced_bits of cells; NULL in older rows).
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import Field, fields

from harness.store.rows import (
    KEY_COLUMNS, NONNEGATIVE, ROW_TYPES, CellKey, Measured, row_columns,
)

SCHEMA_VERSION = 8
# The tables every version of a lossbench store has had: a file without them is not one.
STORE_TABLES = ("meta", "runs", "cells")
RUN_PROCESS_COLUMNS = (("host", "TEXT"), ("pid", "INTEGER"), ("process_start", "TEXT"))

_SQL_TYPES = {"str": "TEXT NOT NULL", "int": "INTEGER NOT NULL", "str | None": "TEXT", "int | None": "INTEGER",
              "float | None": "REAL"}


def _column(f: Field) -> str:
    return f"{f.name} {_SQL_TYPES[str(f.type)]}"


def checks(row_type: type[Measured]) -> list[str]:
    """The row type's constraints as SQL conditions (rows.py states each once)."""
    conditions = [f"{f.name} IS NULL OR {f.name} {NONNEGATIVE}" for f in fields(row_type)
                  if f.metadata.get("check") == NONNEGATIVE]
    conditions.append(f"status IN ({', '.join(repr(s) for s in row_type.STATUSES)})")
    conditions += [f"{a} IS NULL OR {b} IS NULL OR {a} <= {b}" for a, b in row_type.RELATIONS]
    conditions += ["size >= 1", "width >= 1", "seed >= 0"]
    return conditions


def table_sql(row_type: type[Measured], name: str | None = None) -> str:
    """CREATE TABLE for a row type: run, key, the row's columns, constraints."""
    columns = ["id INTEGER PRIMARY KEY", "run_id INTEGER NOT NULL REFERENCES runs(id)"]
    columns += [_column(f) for f in fields(CellKey)]
    columns += [_column(f) for f in fields(row_type) if f.name != "key"]
    columns.append("created REAL NOT NULL")
    columns += [f"CHECK ({c})" for c in checks(row_type)]
    columns.append(f"UNIQUE ({', '.join(KEY_COLUMNS)})")
    body = ",\n    ".join(columns)
    return f"CREATE TABLE IF NOT EXISTS {name or row_type.TABLE} (\n    {body}\n);"


def lost_sql(name: str = "lost") -> str:
    """The table of cells lost to an outside signal, with how many runs lost each."""
    return f"""CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    {", ".join(_column(f) for f in fields(CellKey))},
    reason TEXT NOT NULL, times INTEGER NOT NULL CHECK (times >= 1), created REAL NOT NULL,
    UNIQUE ({", ".join(KEY_COLUMNS)})
);"""


SCHEMA = "\n".join([
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, status TEXT NOT NULL,
    config TEXT NOT NULL, environment TEXT NOT NULL,
    {process}
);""".format(process=", ".join(f"{name} {kind}" for name, kind in RUN_PROCESS_COLUMNS)),
    *(table_sql(t) for t in ROW_TYPES),
    """CREATE TABLE IF NOT EXISTS bandwidth (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    framework TEXT NOT NULL, device TEXT NOT NULL, kernel TEXT NOT NULL,
    elements INTEGER NOT NULL, bytes_moved INTEGER NOT NULL,
    best_seconds REAL NOT NULL, median_seconds REAL NOT NULL, gbps REAL NOT NULL
);""",
    """CREATE TABLE IF NOT EXISTS atlas (
    id INTEGER PRIMARY KEY, loss TEXT NOT NULL, framework TEXT NOT NULL, framework_version TEXT NOT NULL,
    impl TEXT NOT NULL, dtype TEXT NOT NULL, entry TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (loss, framework, framework_version, impl, dtype)
);""",
    lost_sql(),
    """CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, source_id INTEGER, row TEXT NOT NULL,
    reason TEXT NOT NULL, created REAL NOT NULL
);""",
])


def upgrade(db: sqlite3.Connection, version: int) -> None:
    """Bring a store of an earlier version to SCHEMA_VERSION in place (SCHEMA has
    already created the tables it lacked). Runs in one transaction."""
    for row_type in ROW_TYPES:  # columns added since: timing (3), compile times (7), bits of error (8)
        present = {row[1] for row in db.execute(f"PRAGMA table_info({row_type.TABLE})")}
        for f in fields(row_type):
            if f.name != "key" and f.name not in present:
                check = f" CHECK ({f.name} IS NULL OR {f.name} {NONNEGATIVE})" \
                    if f.metadata.get("check") == NONNEGATIVE else ""
                db.execute(f"ALTER TABLE {row_type.TABLE} ADD COLUMN {_column(f)}{check}")
    if version < 7:  # every row so far ran eagerly; the key (UNIQUE) gains the mode: rebuilt
        for table in ("cells", "gradients", "lost"):
            if "mode" not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN mode TEXT NOT NULL DEFAULT 'eager'")
        for row_type in ROW_TYPES:
            _rebuild_with_checks(db, row_type)
        columns = ", ".join(["id", "run_id", *KEY_COLUMNS, "reason", "times", "created"])
        db.execute(lost_sql("lost_keyed"))
        db.execute(f"INSERT INTO lost_keyed ({columns}) SELECT {columns} FROM lost")
        db.execute("DROP TABLE lost")
        db.execute("ALTER TABLE lost_keyed RENAME TO lost")
    present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for name, kind in RUN_PROCESS_COLUMNS:  # versions 1 to 5
        if name not in present:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _rebuild_with_checks(db: sqlite3.Connection, row_type: type[Measured]) -> None:
    """SQLite adds no CHECK to an existing table: copy the rows that pass into a new
    table and move those that do not into quarantine, with the rule they break."""
    table, columns = row_type.TABLE, ["id", "run_id", *KEY_COLUMNS, *row_columns(row_type), "created"]
    conditions = checks(row_type)
    passes = " AND ".join(f"({c})" for c in conditions)
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE NOT ({passes})")
    names = [d[0] for d in cursor.description]
    for values in cursor.fetchall():
        record = dict(zip(names, values))
        broken = [c for c in conditions
                  if not db.execute(f"SELECT {c} FROM {table} WHERE id = ?", (record["id"],)).fetchone()[0]]
        db.execute("INSERT INTO quarantine (source, source_id, row, reason, created) VALUES (?, ?, ?, ?, ?)",
                   (table, record["id"], json.dumps(record), "breaks CHECK " + "; ".join(broken), time.time()))
    db.execute(table_sql(row_type, f"{table}_checked"))
    db.execute(f"INSERT INTO {table}_checked ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {table} "
               f"WHERE {passes}")
    db.execute(f"DROP TABLE {table}")
    db.execute(f"ALTER TABLE {table}_checked RENAME TO {table}")
