"""What every command shares: the usage error, argument types, and the lookups
that turn a bad name into one clear line (exit code 2)."""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import adapters
from reference.arith import DEFAULT_ENGINE, ENGINES
from harness.adapters import FRAMEWORKS, FrameworkUnavailable
from harness.measure.environment import describe_frameworks
from harness.model import registry
from harness.model.spec import LossSpec
from harness.store import Store, StoreError, machine_fault


class UsageError(Exception):
    """Bad input from the user: reported in one line with exit code 2."""


class EnvironmentFault(Exception):
    """The machine failed the command (cells lost to a signal from outside):
    reported in one line with exit code 3."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help, how it adds its arguments, and what it runs
    (returning the exit code). harness.present.cli registers them in one list."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def positive_float(text: str) -> float:
    """A finite positive number (nan and inf refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number (finite), got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(float(text))
    except (ValueError, OverflowError):  # not a number, or inf
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0 or value != float(text):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def bounded(limit: int, what: str) -> Callable[[str], int]:
    """positive_int, refusing values above ``limit`` with ``what`` the limit means."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"{text} is more than {limit:,} ({what})")
        return value
    return parse


def memory(available: bool = True) -> int:
    """Bytes of memory: available now (MemAvailable on Linux), else installed."""
    if available:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**34


def available_memory() -> int:
    return memory(available=True)


def split_assignment(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value


def parse_params(items: Sequence[str]) -> dict[str, float]:
    params = {}
    for item in items:
        name, text = split_assignment(item, "--param")
        if name in params:
            raise UsageError(f"--param {name} given twice")
        try:
            params[name] = float(text)
        except ValueError:
            raise UsageError(f"--param {name} needs a number, got {text!r}") from None
    return params


def load_framework(name: str) -> adapters.Adapter:
    try:
        return adapters.load(name)
    except FrameworkUnavailable as exc:
        raise UsageError(str(exc)) from None


def framework_rows() -> list[dict[str, Any]]:
    """Every framework this installation knows, as `lossbench list frameworks` shows it."""
    return [{"name": name, "available": info.available, "version": info.version or adapters.installed_version(name),
             "impls": list(dict.fromkeys(impl for impls in info.impls.values() for impl in impls)),
             "devices": list(info.devices), "modes": list(info.modes), "reason": info.reason}
            for name, info in describe_frameworks(tuple(FRAMEWORKS)).items()]


def chosen_frameworks(names: Sequence[str] | None) -> list[str]:
    """The frameworks named (each must load: a missing one is a usage error), else every available one."""
    if not names:
        return [row["name"] for row in framework_rows() if row["available"]]
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        load_framework(name)
    return chosen


def loss_spec(name: str) -> LossSpec:
    try:
        return registry.get(name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


@contextmanager
def opened(db: Path, made_by: str | None = None) -> Iterator[Store]:
    """The store at ``db``: with ``made_by`` (the command that makes it) opened
    read-only and required to exist, else opened for writing (created if absent).
    A file that is no usable store is a usage error; a machine fault under SQLite
    (disk full, read-only file system) is raised as the OSError it is."""
    if made_by and not db.exists():
        raise UsageError(f"no results store at {db}; run '{made_by}' first")
    try:
        store = Store(db, writable=made_by is None)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield store
    except sqlite3.DatabaseError as exc:
        fault = machine_fault(exc, db) if isinstance(exc, sqlite3.OperationalError) else None
        if fault is not None:
            raise fault from None
        if isinstance(exc, sqlite3.OperationalError):
            raise
        raise UsageError(f"{db} is a damaged SQLite file: {exc}") from None
    finally:
        for complaint in store.complaints:
            print(f"lossbench: warning: {store.path}: {complaint}", file=sys.stderr)
        store.close()


def reference_engine_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference-engine", choices=list(ENGINES), default=DEFAULT_ENGINE,
                        help=f"the certified arithmetic of the reference: flint (Arb balls, fast) or mpmath "
                             f"(intervals, the reference of record); both give the same numbers "
                             f"(default {DEFAULT_ENGINE})")
