"""The JAX adapter maps optax's conventions onto the canonical losses: each
checked against a value computed by hand from the loss's definition, and the
optax call the atlas records."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness import adapters
from harness.adapters.base import recording
from harness.model import registry
from harness.present.cli import main

from conftest import need, script_result


@pytest.fixture(scope="module", autouse=True)
def _jax() -> None:
    need("jax")


def _value(capsys: pytest.CaptureFixture[str], loss: str, *args: str, impl: str = "native") -> float:
    assert main(["eval", loss, "--framework", "jax", "--impl", impl, "--dtype", "float64", *args, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["result_dtype"] == "float64"  # jax_enable_x64 is on in the adapter's process
    return float(record["value"])


# loss, arguments, the value by hand from the canonical definition (lossbench list losses)
CASES = {
    "mse is squared_error, not l2_loss's half": ("mse", ["--input", "[3, 1]", "--target", "[1, 1]"], (4 + 0) / 2),
    "huber's delta": ("huber", ["--input", "[3, 1]", "--target", "[0, 0]", "--param", "delta=2"],
                      (2 * (3 - 1) + 1 / 2) / 2),
    "smooth_l1 is huber with delta = beta, over beta": (
        "smooth_l1", ["--input", "[0.25, 2]", "--target", "[0, 0]", "--param", "beta=0.5"],
        (0.25**2 / (2 * 0.5) + (2 - 0.25)) / 2),
    "kl_div takes the log of the input row": (
        "kl_div", ["--input", "[[0.5, 0.5]]", "--target", "[[0.25, 0.75]]"],
        0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)),
    "cosine_similarity is minus optax's": ("cosine_similarity", ["--input", "[[1, 0]]", "--target", "[[1, 1]]"],
                                           -1 / math.sqrt(2)),
    "categorical_hinge is multiclass_hinge_loss": (
        "categorical_hinge", ["--input", "[[1, 3, 2], [1, 3, 2]]", "--target", "[0, 1]"], (3 + 0) / 2),
    "focal without alpha": ("focal", ["--input", "[0]", "--target", "[1]", "--param", "gamma=2"],
                            0.25 * math.log(2)),
    "cross_entropy takes integer labels": ("cross_entropy", ["--input", "[[0, 0, 0, 0]]", "--target", "[2]"],
                                           math.log(4)),
    "soft_cross_entropy takes a distribution": (
        "soft_cross_entropy", ["--input", "[[0, 0, 0, 0]]", "--target", "[[0.5, 0.5, 0, 0]]"], math.log(4)),
    "triplet_margin adds eps=1e-6 under the root": (
        "triplet_margin", ["--input", "[[0, 0]]", "--arg", "positive=[[0, 0]]", "--arg", "negative=[[0.5, 0]]"],
        math.sqrt(1e-6) - math.sqrt(0.25 + 1e-6) + 1),
}


@pytest.mark.parametrize("loss, args, expected", list(CASES.values()), ids=list(CASES))
def test_optax_conventions_against_values_by_hand(capsys: pytest.CaptureFixture[str], loss: str, args: list[str],
                                                  expected: float) -> None:
    assert _value(capsys, loss, *args) == pytest.approx(expected, rel=4e-16, abs=0)


def test_every_native_loss_records_its_optax_call() -> None:
    adapter = adapters.load("jax")
    for loss in adapter.impls["native"]:
        spec = registry.get(loss)
        arrays = {a.name: np.ones((2, 3)) * 0.5 if a.domain.is_float else np.zeros(2, dtype=np.int64)
                  for a in spec.args}
        if spec.layout.name != "ROWWISE":
            arrays = {name: values.reshape(-1) for name, values in arrays.items()}
        with recording() as calls:
            adapter.run(spec, "native", arrays, "float32", "cpu", "mean", spec.resolve_params({}))
        assert calls and all(c.api.startswith("optax.losses.") for c in calls), (loss, calls)


def test_half_formats_stay_native_and_float64_is_enabled() -> None:
    adapter = adapters.load("jax")
    spec = registry.get("mse")
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        out = adapter.run(spec, "native", {"input": np.array([1.5]), "target": np.array([0.5])}, dtype, "cpu", "mean",
                          {})
        assert out.result_dtype == dtype and out.values.tolist() == [1.0]
    assert adapter.settings() == {"jax_enable_x64": True}


SHARED_CACHE_SCRIPT = """
import contextlib, json, os, sys
import numpy as np
from harness import adapters
from harness.model import registry
folder = os.environ["LOSSBENCH_COMPILE_CACHE"]
jax_adapter = adapters.load("jax")
spec = registry.get("mse")
arrays = {"input": np.linspace(-1, 1, 7), "target": np.zeros(7)}
def entries():
    return sum(len(files) for _, _, files in os.walk(folder))
cold_compiler, block = jax_adapter.cold_compiler, []
@contextlib.contextmanager
def watched():
    block.append(entries())
    with cold_compiler():
        yield
        block.append(entries())
jax_adapter.cold_compiler = watched
jax_adapter.run(spec, "native", arrays, "float32", "cpu", "mean", {})
eager = entries()
cold, warm = jax_adapter.compile_seconds(spec, "native", arrays, "float64", "cpu", "mean", {})
measured = entries()
jax_adapter.run(spec, "native", {k: v[:5] for k, v in arrays.items()}, "float64", "cpu", "mean", {})
print(json.dumps([eager, block, measured, entries()]))
"""


def test_eager_kernels_go_to_the_sweeps_shared_folder_but_a_cold_compile_never_reads_it(tmp_path: Path) -> None:
    """With the sweep's folder set, eager kernels are written there (the timing
    worker loads them); a compile-time measurement neither reads nor writes it (its
    compiles add no entry), and after it new shapes go to the folder again (the
    compiler's untimed start before the measurement may add some too)."""
    folder = tmp_path / "compiled"
    folder.mkdir()
    eager, (entering, leaving), measured, after = script_result(SHARED_CACHE_SCRIPT, LOSSBENCH_COMPILE_CACHE=str(folder))
    assert 0 < eager <= entering == leaving == measured < after
