"""`lossbench sweep --plan`: the counts are what the sweep then plans and computes,
nothing runs, and what is stored or cached is not counted again."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.present.cli import main

SWEEP = ["sweep", "--loss", "mse", "cross_entropy", "--framework", "numpy", "--dtype", "float32", "--regime",
         "typical", "--sizes", "10", "100", "--no-progress", "--jobs", "1"]


def _numbers(line: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?![.\d])", line)]


def test_plan_counts_what_the_sweep_then_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.sqlite"
    assert main([*SWEEP, "--plan", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not db.exists()  # nothing ran, nothing was made
    cells, to_measure, timed, sets = _numbers(out[0])
    assert (cells, to_measure, timed, sets) == (2 * 2 * 2, 8, 0, 2)  # losses x sizes x impls; two input sets
    value_sets, value_items, gradient_sets, gradient_items = _numbers(out[1])
    # mse: 100 elements; cross_entropy: 100 elements in rows of 10, 10 rows
    assert (value_sets, value_items, gradient_sets, gradient_items) == (2, 100 + 10, 0, 0)
    assert "unknown (no stored cells" in out[2]
    assert main([*SWEEP, "--db", str(db)]) == 0
    assert "8 cells planned, 0 already stored, 8 stored now" in capsys.readouterr().out
    assert main([*SWEEP, "--plan", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert _numbers(out[0])[1] == 0 and _numbers(out[1])[:2] == [0, 0]
    assert "rates fitted to the stored cells of numpy" in out[2] and out[3].startswith("total ")


def test_plan_counts_gradients_and_timed_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SWEEP, "--grad", "--time", "--time-size", "100", "--plan", "--db", str(tmp_path / "r.sqlite")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert _numbers(out[0])[2] == 2 * 2  # losses x impls at size 100
    assert _numbers(out[1])[2:] == [2, 100 + 100]  # cross_entropy's components: 10 rows x width 10
