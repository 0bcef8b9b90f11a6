"""SQLite results store: one row per run and one per cell, one per cell whose
gradient was measured, the bandwidth measured for each timed run, the
conventions atlas (one row per loss, framework version, impl and dtype), and
the cells whose worker was lost to an outside signal (counted across runs).

A cell is unique by what was measured (harness.store.rows.CellKey), so a rerun
of the same configuration finds what is already stored, and a sweep killed at
any point and rerun ends with every cell exactly once. Reads build typed rows;
a row that could not have been measured (a corrupted page) is named in
``complaints`` and not served.

A file is checked before it is opened for anything: one that is no lossbench
store this version can use (a directory, a text file, a damaged SQLite file,
somebody else's database) raises StoreError and is left untouched. Reading
opens the file read-only (immutable where it cannot be written: a read-only
mount, a file of another user); only writing creates, upgrades or changes it.
An SQLite failure of the machine (disk full, read-only file system) is raised
as the OSError it is, naming the store.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.measure.bandwidth import StreamResult
from harness.measure.environment import Environment
from harness.store.rows import KEY_COLUMNS, BadRow, CellKey, CellRow, GradientRow, Measured, Stored, row_columns
from harness.store.schema import RUN_PROCESS_COLUMNS, SCHEMA, SCHEMA_VERSION, STORE_TABLES, upgrade

DEFAULT_DB = Path("reports/results.sqlite")
_ORDER = "ORDER BY loss, framework, impl, dtype, device, regime, size, width, seed"
_SQLITE_HEADER = b"SQLite format 3\x00"
# What SQLite says when the machine, not the store, fails, and the OS error it is.
_MACHINE_FAULTS = (("disk is full", errno.ENOSPC), ("readonly database", errno.EROFS),
                   ("disk i/o error", errno.EIO), ("unable to open database file", errno.EACCES))
FAILED_STATUSES = ("error", "timeout", "crashed")
_WAIT_SECONDS = 60.0  # how long a process waits for another's lock on the store


class StoreError(RuntimeError):
    """A file that is no results store this lossbench can use; nothing was changed in it."""


def machine_fault(exc: sqlite3.Error, path: Path) -> OSError | None:
    """The OSError an SQLite error stands for when the machine failed, else None
    (a read-only database is a read-only mount or a file this user may not write)."""
    text = str(exc).lower()
    for words, code in _MACHINE_FAULTS:
        if words in text:
            if code in (errno.EROFS, errno.EACCES):  # SQLite cannot tell which: the mount can
                code = errno.EROFS if _on_read_only_mount(path) else errno.EACCES
            return OSError(code, f"{os.strerror(code)} (SQLite: {exc})", str(path))
    return None


def _on_read_only_mount(path: Path) -> bool:
    folder = path if path.is_dir() else path.parent
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextmanager
def _machine_faults(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        fault = machine_fault(exc, path)
        if fault is None:
            raise
        raise fault from None


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if it
    does not exist: with the pid it names one process, since pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    if Path("/proc/self/stat").exists():
        return started is not None and _process_start(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the file. Where lossbench could write the
    file it is opened as usual with query_only set (so SQLite removes the lock
    files it makes when it closes); elsewhere (a read-only mount, another user's
    file) read-only and immutable, since SQLite could not even keep its lock files."""
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK):
        db = sqlite3.connect(path, timeout=_WAIT_SECONDS)
        db.execute("PRAGMA query_only = ON")
        return db
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1", uri=True, timeout=_WAIT_SECONDS)


def _write_ahead_log(db: sqlite3.Connection) -> None:
    """Put the store in WAL mode (readers and one writer at once). Turning a new
    file to WAL needs an exclusive lock that SQLite does not wait for: two sweeps
    started together on a new store would see "database is locked" here, so this
    waits for the other one as a locked statement would."""
    deadline = time.monotonic() + _WAIT_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _refuse_damage(db: sqlite3.Connection, path: Path) -> None:
    """PRAGMA quick_check: a file whose structure is damaged is refused. A row
    that breaks a CHECK (a flipped bit in a value) is not structure: reads name
    and skip it (``complaints``), and the rest of the store is served."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check")
                if row[0] != "ok" and not row[0].startswith("CHECK constraint failed")]
    if problems:
        raise StoreError(f"{path} is a damaged SQLite file: {'; '.join(problems[:3])}")


def inspect(path: Path) -> int | None:
    """The schema version of the store at ``path``, None where there is none yet
    (no file, an empty file, an SQLite file without tables); StoreError, with what
    is wrong, for anything that is not a usable lossbench store. Reads only."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a results store")
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as file:
        header = file.read(len(_SQLITE_HEADER))
    if header != _SQLITE_HEADER:
        if _SQLITE_HEADER.startswith(header) and path.stat().st_size < 512:
            return None  # another process is creating the store this moment: a writer waits for its lock
        raise StoreError(f"{path} is not an SQLite file, so not a results store")
    db = _read_only(path)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        if not set(STORE_TABLES) <= tables or \
                [row[1] for row in db.execute("PRAGMA table_info(meta)")] != ["key", "value"]:
            raise StoreError(f"{path} is an SQLite database but not a lossbench results store "
                             f"(its tables: {', '.join(sorted(tables))})")
        found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is None:
            raise StoreError(f"{path} is an SQLite database but not a lossbench results store "
                             "(its meta table has no schema_version)")
        try:
            version = int(found[0])
        except (TypeError, ValueError):
            raise StoreError(f"{path} has schema_version {found[0]!r}, not an integer: "
                             "not a store lossbench wrote") from None
        _refuse_damage(db, path)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and machine_fault(exc, path):
            raise machine_fault(exc, path) from None
        raise StoreError(f"{path} is a damaged SQLite file: {exc}") from None
    finally:
        db.close()
    if not 1 <= version <= SCHEMA_VERSION:
        raise StoreError(f"{path} has schema version {version}, this lossbench reads 1 to {SCHEMA_VERSION}")
    return version


@dataclass(frozen=True)
class Run:
    id: int
    started: float
    ended: float | None
    status: str
    config: dict[str, Any]
    environment: Environment


@dataclass(frozen=True)
class Merged:
    """What a merge brought: runs copied, and rows each table added (or replaced)."""

    runs: int
    cells: int
    gradients: int
    bandwidth: int
    kept: int  # rows not brought in: this store's row of the same cell stands


@dataclass(frozen=True)
class StoredKeys:
    """What a sweep finds stored: cells (-> whether a timed sweep has nothing left
    to do there: timed, or not ok), the cells whose gradient is stored, and of
    both those stored as failed (error, timeout, crashed), which --retry-failed
    measures again."""

    cells: dict[CellKey, bool]
    gradients: set[CellKey]
    failed_cells: frozenset[CellKey] = frozenset()
    failed_gradients: frozenset[CellKey] = frozenset()


class Store:
    def __init__(self, path: Path | str, writable: bool = True) -> None:
        """Open the store at ``path``; ``writable`` creates or upgrades it where
        needed and marks this machine's runs whose process is gone interrupted,
        otherwise it is read as it is, never changed."""
        self.path = Path(path)
        self.writable = writable
        self.complaints: list[str] = []  # rows read back that cannot be right, by table and id
        found = inspect(self.path)
        if not writable:
            if found is None:
                raise StoreError(f"{self.path} holds no results yet")
            if found < SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {found}; a writing command "
                                 f"(lossbench sweep) upgrades it to {SCHEMA_VERSION} first")
            self.db = _read_only(self.path)
            return
        with _machine_faults(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=_WAIT_SECONDS)
            _write_ahead_log(self.db)
            if found != SCHEMA_VERSION:
                self._create_or_upgrade()
            self._mark_abandoned_runs()

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

    def _mark_abandoned_runs(self) -> None:
        """Runs of this host still 'running' whose process is gone were killed
        without a chance to say so: they are interrupted."""
        host = socket.gethostname()
        gone = [run_id for run_id, pid, started in self.db.execute(
            "SELECT id, pid, process_start FROM runs WHERE status = 'running' AND host = ?", (host,))
            if not _alive(pid, started)]
        if gone:
            with self.db:
                self.db.executemany("UPDATE runs SET status = 'interrupted' WHERE id = ?", [(i,) for i in gone])

    def check(self) -> None:
        """PRAGMA quick_check, before a sweep writes: a damaged file is refused."""
        _refuse_damage(self.db, self.path)

    def close(self) -> None:
        self.db.close()

    def start_run(self, config: dict[str, Any], environment: Environment) -> int:
        pid = os.getpid()
        with _machine_faults(self.path), self.db:
            cur = self.db.execute(
                "INSERT INTO runs (started, status, config, environment, host, pid, process_start) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (time.time(), json.dumps(config, sort_keys=True), json.dumps(environment.to_json()),
                 socket.gethostname(), pid, _process_start(pid)))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str) -> None:
        with _machine_faults(self.path), self.db:
            self.db.execute("UPDATE runs SET ended = ?, status = ? WHERE id = ?", (time.time(), status, run_id))

    def stored_keys(self) -> StoredKeys:
        keys = ", ".join(KEY_COLUMNS)
        failed = ", ".join(repr(s) for s in FAILED_STATUSES)
        cells, failed_cells = {}, set()
        for row in self.db.execute(f"SELECT {keys}, status != 'ok' OR forward_seconds IS NOT NULL, "
                                   f"status IN ({failed}) FROM cells"):
            key = CellKey(*row[:-2])
            cells[key] = bool(row[-2])
            if row[-1]:
                failed_cells.add(key)
        gradients, failed_gradients = set(), set()
        for row in self.db.execute(f"SELECT {keys}, status IN ({failed}) FROM gradients"):
            gradients.add(CellKey(*row[:-1]))
            if row[-1]:
                failed_gradients.add(CellKey(*row[:-1]))
        return StoredKeys(cells, gradients, frozenset(failed_cells), frozenset(failed_gradients))

    def add(self, run_id: int, rows: Sequence[Measured]) -> list[Measured]:
        """Insert value or gradient rows, each into its table under its own conflict
        rule (CellRow.ON_CONFLICT, GradientRow.ON_CONFLICT), in one transaction.
        Returns the rows that were added or replaced an older one (a row another
        sweep stored first is not counted as this one's). A stored row forgets
        that its cell was ever lost."""
        with _machine_faults(self.path), self.db:
            return self._insert(run_id, rows)

    def _insert(self, run_id: int, rows: Sequence[Measured]) -> list[Measured]:
        """add's statements, inside the caller's transaction."""
        stored: list[Measured] = []
        now = time.time()
        where = " AND ".join(f"{k} = ?" for k in KEY_COLUMNS)
        for row in rows:
            own = row_columns(type(row))
            columns = ["run_id", *KEY_COLUMNS, *own, "created"]
            updates = ", ".join(f"{c} = excluded.{c}" for c in ["run_id", *own, "created"])
            before = self.db.total_changes
            self.db.execute(
                f"INSERT INTO {row.TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) {row.ON_CONFLICT.format(updates=updates)}",
                (run_id, *asdict(row.key).values(), *(getattr(row, c) for c in own), now))
            if self.db.total_changes > before:
                stored.append(row)
                self.db.execute(f"DELETE FROM lost WHERE {where}", tuple(asdict(row.key).values()))
        return stored

    def merge(self, source: Store) -> Merged:
        """Bring another store's runs (with their environment: host, device names,
        framework versions), value and gradient rows and bandwidth results into
        this one. Each row keeps its run, and meets this store's rows under the
        tables' own conflict rules (the first row stands, a failed or untimed one
        is replaced). A run already merged (same host, pid and start) is not
        copied again, so merging twice adds nothing; all of it is one transaction,
        so a merge killed midway leaves nothing and the next one brings everything.
        A source run still marked running is copied interrupted: the copy will
        never see it end."""
        process = ", ".join(name for name, _ in RUN_PROCESS_COLUMNS)
        columns = f"started, ended, status, config, environment, {process}"
        runs, bandwidth, known = {}, 0, set(self.db.execute(f"SELECT {process}, started FROM runs"))
        added, offered = {"cells": 0, "gradients": 0}, 0
        with _machine_faults(self.path), self.db:  # one transaction: a merge killed midway left nothing
            for row in source.db.execute(f"SELECT id, {columns} FROM runs ORDER BY id"):
                old_id, started, ended, status, config, environment, *where = row
                if (*where, started) in known:
                    continue
                values = (started, ended, "interrupted" if status == "running" else status, config, environment,
                          *where)
                runs[old_id] = int(self.db.execute(
                    f"INSERT INTO runs ({columns}) VALUES ({', '.join('?' * len(values))})", values).lastrowid)
                found = source.bandwidth(old_id)
                self._insert_bandwidth(runs[old_id], [StreamResult(r["framework"], r["device"], r["kernel"],
                                                                   r["elements"], r["best_seconds"],
                                                                   r["median_seconds"]) for r in found])
                bandwidth += len(found)
            for table, rows in (("cells", source.cells()), ("gradients", source.gradients())):
                for stored in rows:
                    if stored.run_id in runs:
                        offered += 1
                        added[table] += len(self._insert(runs[stored.run_id], [stored.row]))
        return Merged(len(runs), added["cells"], added["gradients"], bandwidth,
                      offered - added["cells"] - added["gradients"])

    def count_lost(self, run_id: int, key: CellKey, reason: str) -> int:
        """Record that a cell's worker was lost to an outside signal; returns how
        many times that has happened to the cell, over every run."""
        columns = ["run_id", *KEY_COLUMNS, "reason", "times", "created"]
        values = (run_id, *asdict(key).values(), reason, 1, time.time())
        with _machine_faults(self.path), self.db:
            self.db.execute(
                f"INSERT INTO lost ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET times = lost.times + 1, "
                "run_id = excluded.run_id, reason = excluded.reason, created = excluded.created", values)
        where = " AND ".join(f"{k} = ?" for k in KEY_COLUMNS)
        return int(self.db.execute(f"SELECT times FROM lost WHERE {where}", values[1:1 + len(KEY_COLUMNS)])
                   .fetchone()[0])

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
        with _machine_faults(self.path), self.db:
            self._insert_bandwidth(run_id, results)

    def _insert_bandwidth(self, run_id: int, results: Iterable[StreamResult]) -> None:
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
        with _machine_faults(self.path), self.db:
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
def open_store(path: Path | str, writable: bool = True) -> Iterator[Store]:
    store = Store(path, writable)
    try:
        yield store
    finally:
        store.close()
