"""Execution mode as a dimension of a cell: eager and compiled cells of the same
loss, framework and dtype are measured and stored apart, compiled cells carry
their compile times, and every command can select a mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.present.cli import main
from harness.store import open_store

from conftest import ROOT, need, script_result


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


def test_a_cold_compile_time_comes_before_any_kernel_of_its_loss(tmp_path: Path) -> None:
    """A timed compiled cell: the compiler is started on a trivial function, its caches
    emptied, then the loss compiled cold and warm; only after that block is the loss
    compiled for the values and the timed calls. The next cell of the process starts
    no compiler."""
    log = tmp_path / "compiled.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOSSBENCH_ADAPTERS="recording=tests.support.recording_adapter",
               RECORDING_LOG=str(log))
    proc = subprocess.run([sys.executable, "-m", "harness", "sweep", "--loss", "mse", "--framework", "recording",
                           "--mode", "compiled", "--dtype", "float64", "--regime", "typical", "--sizes", "10", "100",
                           "--time", "--no-progress", "--db", str(tmp_path / "r.sqlite")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = log.read_text().splitlines()
    cold_block = ["cold", "compile _ok", "compile _ok", "warm again"]
    assert events[:6] == ["compile _doubled_input", *cold_block, "compile _ok"]  # the values after the block
    assert events.count("compile _doubled_input") == 1 and events.count("cold") == 2
    second = events.index("cold", 1)
    assert events[second:second + 4] == cold_block
    with open_store(tmp_path / "r.sqlite", writable=False) as store:
        assert all(r["compile_cold_seconds"] is not None for r in store.cells())


INDUCTOR_FOLDER_SCRIPT = """
import contextlib, json, os
import numpy as np
from harness import adapters
from harness.model import registry
shared = os.path.join(os.environ["LOSSBENCH_COMPILE_CACHE"], "torchinductor")
torch_adapter = adapters.load("torch")
spec = registry.get("mse")
arrays = {"input": np.linspace(-1, 1, 7), "target": np.zeros(7)}
def entries(folder=shared):
    return sum(len(files) for _, _, files in os.walk(folder))
cold_compiler, block = torch_adapter.cold_compiler, {}
@contextlib.contextmanager
def watched():
    block["shared before"] = entries()
    with cold_compiler():
        folder = os.environ["TORCHINDUCTOR_CACHE_DIR"]
        block["cold folder empty"] = entries(folder) == 0
        yield
        block["cold folder entries"] = entries(folder)
    block.update({"shared after": entries(), "cold folder kept": os.path.exists(folder),
                  "cold folder in shared": folder.startswith(os.environ["LOSSBENCH_COMPILE_CACHE"])})
torch_adapter.cold_compiler = watched
torch_adapter.run(spec, "native", arrays, "float32", "cpu", "mean", {}, mode="compiled")
compiled = entries()
torch_adapter.compile_seconds(spec, "native", arrays, "float64", "cpu", "mean", {})
measured = entries()
torch_adapter.run(spec, "native", {k: v[:5] for k, v in arrays.items()}, "float64", "cpu", "sum", {}, mode="compiled")
print(json.dumps([compiled, measured, entries(), block]))
"""


def test_torch_compiles_into_the_sweeps_shared_folder_but_never_for_a_cold_compile(tmp_path: Path) -> None:
    """In a sweep's worker, inductor compiles into the folder the workers share (the
    next worker loads its CPU checks and kernels). A compile-time measurement
    compiles into a new empty folder, so it neither reads the shared one nor
    empties it; that folder is removed after it, and the process compiles into the
    shared one again (the timing worker loads what the others compiled)."""
    need("torch")
    folder = tmp_path / "compiled"
    folder.mkdir()
    compiled, measured, after, block = script_result(
        INDUCTOR_FOLDER_SCRIPT, TORCHINDUCTOR_CACHE_DIR=None, LOSSBENCH_COMPILE_CACHE=str(folder))
    assert 0 < compiled <= block["shared before"] == block["shared after"] == measured < after
    assert block["cold folder empty"] and block["cold folder entries"] > 0
    assert not block["cold folder kept"] and not block["cold folder in shared"]


STATIC_SHAPES_SCRIPT = """
import json
import numpy as np
import torch
from harness import adapters
from harness.model import registry
torch_adapter = adapters.load("torch")
spec = registry.get("mse")
for n in (5, 6, 7):
    arrays = {"input": np.linspace(-1, 1, n), "target": np.zeros(n)}
    torch_adapter.run(spec, "native", arrays, "float32", "cpu", "mean", {}, mode="compiled")
print(json.dumps(torch._dynamo.utils.counters["stats"]["unique_graphs"]))
"""


def test_torch_compiles_each_shape_for_itself() -> None:
    """A compiled torch loss met at a new size is compiled again for that size, as
    when compiled once for it: dynamo's default would compile the second size with
    dynamic shapes and serve every later size from that kernel, so a cell's values
    would depend on the sizes the process met before (dynamic kernels round some
    items differently from static ones)."""
    need("torch")
    assert script_result(STATIC_SHAPES_SCRIPT) == 3
