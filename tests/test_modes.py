"""Execution mode as a dimension of a cell: eager and compiled cells of the same
loss, framework and dtype are measured and stored apart, compiled cells carry
their compile times, and every command can select a mode."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.present.cli import main
from harness.store import open_store

from conftest import need


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("jax")
    db = tmp_path_factory.mktemp("modes") / "r.sqlite"
    assert main(["sweep", "--loss", "mse", "cross_entropy", "--framework", "jax", "numpy", "--dtype", "float32",
                 "--regime", "typical", "--sizes", "100", "--mode", "eager", "compiled", "--time", "--grad",
                 "--jobs", "1", "--db", str(db), "--no-progress"]) == 0
    return db


def test_eager_and_compiled_cells_are_stored_apart(store_path: Path) -> None:
    with open_store(store_path, writable=False) as store:
        cells = {(r["loss"], r["framework"], r["impl"], r["mode"]): r for r in store.cells()}
        gradients = {(g["loss"], g["framework"], g["mode"]) for g in store.gradients()}
    # numpy has no compiler: eager only; jax both (one impl per loss)
    assert {(loss, fw, mode) for loss, fw, _, mode in cells} == {
        (loss, fw, mode) for loss in ("mse", "cross_entropy")
        for fw, mode in (("numpy", "eager"), ("jax", "eager"), ("jax", "compiled"))}
    assert gradients == {(loss, fw, mode) for loss, fw, _, mode in cells}
    for key, row in cells.items():
        assert row["status"] == "ok" and row["forward_seconds"] > 0
        if key[3] == "compiled":
            assert row["compile_cold_seconds"] > 0 and row["compile_warm_seconds"] > 0
        else:
            assert row["compile_cold_seconds"] is None and row["compile_warm_seconds"] is None


def test_a_rerun_finds_both_modes_stored(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--loss", "mse", "--framework", "jax", "--dtype", "float32", "--regime", "typical",
                 "--sizes", "100", "--mode", "compiled", "eager", "--db", str(store_path), "--no-progress"]) == 0
    assert "2 cells planned, 2 already stored, 0 stored now" in capsys.readouterr().out


def test_results_and_recommend_select_and_name_the_mode(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--db", str(store_path), "--mode", "compiled", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {r["mode"] for r in rows} == {"compiled"} and {r["framework"] for r in rows} == {"jax"}
    assert main(["recommend", "--loss", "mse", "--max-ulp", "1000", "--db", str(store_path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    choices = [found["choice"], *found["runners_up"]]
    assert {(c["framework"], c["mode"]) for c in choices} == {("numpy", "eager"), ("jax", "eager"),
                                                               ("jax", "compiled")}
    assert main(["recommend", "--loss", "mse", "--max-ulp", "1000", "--mode", "compiled", "--db", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "jax:native float32 (compiled)" in out and "numpy" not in out


def test_eval_runs_a_mode_the_framework_has(capsys: pytest.CaptureFixture[str]) -> None:
    need("jax")
    assert main(["eval", "mse", "--framework", "jax", "--mode", "compiled", "--dtype", "float64", "--input",
                 "[3, 1]", "--target", "[1, 1]", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["mode"] == "compiled" and record["value"] == 2.0 and record["ulp_error"] == 0
    assert main(["eval", "mse", "--framework", "numpy", "--mode", "compiled", "--dtype", "float64", "--input", "[1]",
                 "--target", "[1]"]) == 2
    assert "numpy has no compiled mode (modes: eager)" in capsys.readouterr().err


def test_a_keras_object_first_built_inside_a_trace_serves_every_later_trace() -> None:
    """A Keras regularizer built inside one tf.function trace held that graph's
    constants: the next shape's trace failed ('out of scope'). Built eagerly now."""
    need("tensorflow")
    import numpy as np
    from harness import adapters
    from harness.adapters import tensorflow_adapter
    from harness.model import registry
    adapter, spec = adapters.load("tensorflow"), registry.get("l1_penalty")
    tensorflow_adapter._built.cache_clear()  # so that the first build happens inside the compiled trace
    for n in (3, 5):
        out = adapter.run(spec, "native", {"input": np.arange(n, dtype=np.float64) - 1.0}, "float32", "cpu", "sum",
                          {}, mode="compiled")
        assert out.values.tolist() == [float(sum(abs(i - 1.0) for i in range(n)))]
