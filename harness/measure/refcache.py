"""Set references on disk: one .npz per input set and measured quantity, named
by the set and keyed by its content and the code that computes it."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.measure.quantity import Quantity
from harness.measure.refsets import InputSet


class ReferenceCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, inputset: InputSet, quantity: Quantity) -> Path:
        return self.directory / (f"{inputset.loss}-{inputset.dtype}-{inputset.regime}{quantity.file_tag}-"
                                 f"{inputset.key(quantity)}.npz")

    def has(self, inputset: InputSet, sizes: Sequence[int], quantity: Quantity) -> bool:
        path = self.path(inputset, quantity)
        if not path.exists():
            return False
        with np.load(path) as data:
            return set(sizes) <= {int(s) for s in data["sizes"]}

    def save(self, inputset: InputSet, quantity: Quantity, reference: Any) -> None:
        path = self.path(inputset, quantity)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(partial, **quantity.encode(reference))
        os.replace(partial, path)  # atomic: a killed run never leaves half a file

    @staticmethod
    def read(path: Path, quantity: Quantity) -> Any:
        with np.load(path) as data:
            return quantity.decode(data)
