"""The conventions atlas against behaviour the frameworks document, computed here
from the documented formula, never copied from the atlas itself."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.measure import atlas
from harness.measure.environment import describe_frameworks
from harness.model import registry
from harness.present.cli import main
from harness.store import SCHEMA_VERSION, open_store

from test_store import _stored_as_version as stored_as_version
from conftest import need


def _entry(framework: str, loss: str, impl: str, dtype: str = "float32") -> dict:
    need(framework)
    return atlas.entry(framework, loss, impl, dtype).to_json()


def _finite_probabilities(probe: dict) -> tuple[float, float] | None:
    p, y = probe["inputs"]["input"], probe["inputs"]["target"]
    return None if "nan" in (p, y) else (float(p), float(y))


def test_torch_bce_clamps_its_log_at_minus_100() -> None:
    # torch docs (BCELoss): "our solution is that BCELoss clamps its log function
    # outputs to be greater than or equal to -100".
    entry = _entry("torch", "bce", "native")
    checked = 0
    for probe in entry["edges"]:
        pair = _finite_probabilities(probe)
        if pair is None:
            assert probe["deviation"] == atlas.ERROR  # torch refuses nan inputs and targets
            continue
        p, y = pair
        with np.errstate(divide="ignore"):
            documented = -(y * max(np.log(np.float64(p)), -100.0) + (1 - y) * max(np.log1p(-np.float64(p)), -100.0))
        assert probe["value"] == pytest.approx(documented, rel=1e-6, abs=1e-30), probe
        if p == 0.0 and y == 1.0:
            assert probe["value"] == 100.0 and probe["deviation"] == atlas.CLAMPED
        checked += 1
    assert checked >= 20


def test_keras_bce_clips_probabilities_to_its_epsilon() -> None:
    import keras

    entry = _entry("tensorflow", "bce", "native")
    eps = keras.config.epsilon()
    assert entry["settings"]["keras.config.epsilon()"] == eps
    zero_one = [pr for pr in entry["edges"] if pr["inputs"] == {"input": 0.0, "target": 1.0}]
    assert zero_one, "the edge inputs include p = 0, y = 1"
    # Documented: predictions are clipped to [epsilon, 1 - epsilon] (float32 here).
    assert zero_one[0]["value"] == pytest.approx(-math.log(np.float32(eps)), rel=1e-6)
    assert zero_one[0]["deviation"] == atlas.EPSILON
    assert f"clipped to [{eps:g}, 1 - {eps:g}]" in zero_one[0]["note"]


@pytest.mark.parametrize("loss, default", [("poisson_nll", ("eps", 1e-8)), ("triplet_margin", ("eps", 1e-6)),
                                           ("gaussian_nll", ("eps", 1e-6))])
def test_torch_defaults_that_change_the_value_are_recorded(loss: str, default: tuple[str, float]) -> None:
    # Documented signatures: poisson_nll_loss(eps=1e-08), triplet_margin_loss(eps=1e-06),
    # gaussian_nll_loss(eps=1e-06).
    entry = _entry("torch", loss, "native")
    (call,) = entry["api"]
    assert call["api"].startswith("torch.nn.functional.")
    assert list(default) in call["defaults"]
    assert ["reduction", "mean"] in call["passed"]


def test_torch_poisson_eps_explains_its_edge_values() -> None:
    entry = _entry("torch", "poisson_nll", "native")
    explained = [p for p in entry["edges"] if p["deviation"] == atlas.EPSILON]
    assert explained and all("1e-08" in p["note"] for p in explained)
    for probe in explained:  # documented: input - target * log(input + eps)
        x, y = float(probe["inputs"]["input"]), float(probe["inputs"]["target"])
        assert probe["value"] == pytest.approx(x - y * math.log(x + 1e-8), rel=1e-6)


def test_keras_computes_half_inputs_in_float32() -> None:
    entry = _entry("tensorflow", "mse", "native")
    assert entry["result_dtypes"] == {"float16": "float32", "bfloat16": "float32", "float32": "float32",
                                      "float64": "float64"}
    # float64 only because the adapter asks for it, and the recorded calls say so.
    assert [dict(c["passed"])["dtype"] for c in entry["api"]] == [None, "float64"]


def test_mean_divisors_are_measured() -> None:
    # torch kl_div reduction 'batchmean' divides by the batch size (documented);
    # F.mse_loss's mean divides by the number of elements.
    kl = _entry("torch", "kl_div", "native")
    rows = atlas.PROBE_SIZE // atlas.ATLAS_WIDTH
    assert kl["mean_divides_by"] == f"the number of rows ({rows})"
    assert _entry("torch", "mse", "native")["mean_divides_by"] == f"the number of elements ({atlas.PROBE_SIZE})"


def test_numpy_stable_bce_has_no_deviation_on_edges() -> None:
    entry = _entry("numpy", "bce", "stable")
    assert set(entry["deviation_counts"]) <= {atlas.EXACT, atlas.ROUNDING}, entry["deviation_counts"]
    assert entry["composed"].startswith("def _bce_stable")


def test_edge_inputs_are_distinct_edge_values() -> None:
    spec = registry.get("hinge")
    arrays = atlas.edge_inputs(spec, "float32")
    pairs = list(zip(arrays["input"].tolist(), arrays["target"].tolist()))
    assert len({(repr(a), b) for a, b in pairs}) == len(pairs)
    assert {1.0, -1.0} == set(arrays["target"].tolist())


def test_plan_covers_every_impl_of_every_loss() -> None:
    planned = set(atlas.plan(registry.names(), describe_frameworks(("numpy",))))
    assert planned == {("numpy", loss, impl) for loss in registry.names() for impl in ("naive", "stable")}


def test_cli_atlas_stores_what_it_prints(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "results.sqlite"
    assert main(["atlas", "--loss", "bce", "--framework", "numpy", "--db", str(db), "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(e["framework"], e["impl"]) for e in printed] == [("numpy", "naive"), ("numpy", "stable")]
    with open_store(db) as store:
        assert store.atlas() == printed
    assert main(["atlas", "--loss", "bce", "--framework", "numpy", "--db", str(db), "--no-progress"]) == 0
    with open_store(db) as store:
        assert len(store.atlas()) == 2  # a rerun replaces, it does not duplicate


def test_version_1_store_gains_the_atlas(tmp_path) -> None:
    db = tmp_path / "old.sqlite"
    stored_as_version(db, 1)
    with open_store(db) as store:
        assert store.atlas() == []
        version = store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION)


@pytest.mark.parametrize("argv, message", [
    (["atlas", "--loss", "nope"], "unknown loss 'nope'"),
    (["atlas", "--framework", "mxnet"], "invalid choice"),
    (["atlas", "--dtype", "float8"], "invalid choice"),
])
def test_cli_atlas_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_atlas_disabled_framework_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOSSBENCH_DISABLE", "torch")
    assert main(["atlas", "--framework", "torch", "--no-store"]) == 2
    assert "disabled" in capsys.readouterr().err
