"""Set references on disk: one .npz per input set and measured quantity, named
by the set and keyed by its content and the code that computes it.

An entry holds what it is (the set's key, which covers the code version) and a
checksum of its arrays, and both are verified before it is used: a truncated,
empty, corrupt or mismatched file (another set's entry copied under this name)
is named in ``discarded``, deleted and computed again, never read as this set's
reference.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.measure.quantity import Quantity
from harness.measure.refsets import InputSet

_KEY, _CHECKSUM = "entry_key", "entry_checksum"


class EntryInvalid(Exception):
    """A cache entry that is not what its name says, or not readable at all."""


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """A digest of the arrays' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class ReferenceCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.discarded: list[str] = []  # one line per entry found invalid, deleted and recomputed

    def remove_stale(self) -> int:
        """Delete partial files left by processes that died while writing them
        (killed, or on a full disk before this version cleaned up); returns how many."""
        removed = 0
        for partial in self.directory.glob("*.tmp.npz"):
            pid = partial.name.rsplit(".", 3)[-3]
            if pid.isdigit() and not _running(int(pid)):
                partial.unlink(missing_ok=True)
                removed += 1
        return removed

    def path(self, inputset: InputSet, quantity: Quantity) -> Path:
        return self.directory / (f"{inputset.loss}-{inputset.dtype}-{inputset.regime}{quantity.file_tag}-"
                                 f"{inputset.key(quantity)}.npz")

    def has(self, inputset: InputSet, sizes: Sequence[int], quantity: Quantity) -> bool:
        """Whether a verified entry holds these sizes; an invalid one is discarded."""
        path = self.path(inputset, quantity)
        if not path.exists():
            return False
        try:
            data = self.read_arrays(path, inputset.key(quantity))
        except EntryInvalid as problem:
            self.discarded.append(f"reference cache entry {path} {problem}: deleted, computed again")
            path.unlink(missing_ok=True)
            return False
        return set(sizes) <= {int(s) for s in data["sizes"]}

    def save(self, inputset: InputSet, quantity: Quantity, reference: Any) -> None:
        path = self.path(inputset, quantity)
        self.directory.mkdir(parents=True, exist_ok=True)
        data = quantity.encode(reference)
        data[_KEY] = np.array(inputset.key(quantity))
        data[_CHECKSUM] = np.array(checksum(data))
        partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(partial, **data)
            os.replace(partial, path)  # atomic: a killed run never leaves half a file
        except OSError as exc:  # a full disk, above all: name the file (finally frees what was written)
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        finally:
            partial.unlink(missing_ok=True)

    @staticmethod
    def read_arrays(path: Path, key: str | None) -> dict[str, np.ndarray]:
        """The entry's arrays, verified intact and, unless ``key`` is None (a worker
        reading what its parent has just verified), to be that set's."""
        try:
            with np.load(path) as stored:
                data = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise EntryInvalid(f"is unreadable ({type(exc).__name__}: {exc})") from None
        if _KEY not in data or _CHECKSUM not in data:
            raise EntryInvalid("has no key or checksum")
        stored_key, expected = data.pop(_KEY), str(data.pop(_CHECKSUM))
        if checksum({**data, _KEY: stored_key}) != expected:
            raise EntryInvalid("fails its checksum")
        if key is not None and str(stored_key) != key:
            raise EntryInvalid("holds another input set's reference")
        return data

    @classmethod
    def read(cls, path: Path, quantity: Quantity, key: str | None = None) -> Any:
        return quantity.decode(cls.read_arrays(path, key))
