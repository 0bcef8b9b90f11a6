"""PyTensor compiles the textbook graph: in its default mode the stabilising
rewrites make saturated inputs finite and accurate, with them excluded
(impl 'unstabilized') the same graph overflows. Values are judged against the
reference; the rewritten graphs are read from the compiled functions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.present.cli import main

from conftest import need


@pytest.fixture(scope="module", autouse=True)
def _pytensor() -> None:
    need("pytensor")


def _eval(capsys: pytest.CaptureFixture[str], impl: str, loss: str, *args: str) -> dict:
    code = main(["eval", loss, "--framework", "pytensor", "--impl", impl, "--dtype", "float32", "--reduction",
                 "none", *args, "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out)


# Saturated inputs: the textbook graph overflows or cancels, its rewrite does not.
SATURATED = {
    "bce_logits: log(sigmoid(z)) -> -softplus(-z)": ("bce_logits", ["--input", "[100, -100]", "--target", "[1, 1]"]),
    "soft_margin: log(1 + exp(-y s)) -> softplus(-y s)": ("soft_margin", ["--input", "[-100, 100]", "--target",
                                                                          "[1, -1]"]),
    "cross_entropy: log(softmax(z)) -> log_softmax(z)": ("cross_entropy", ["--input", "[[0, 200], [200, 0]]",
                                                                           "--target", "[0, 1]"]),
}


@pytest.mark.parametrize("loss, args", list(SATURATED.values()), ids=list(SATURATED))
def test_the_default_rewrites_stabilise_what_the_textbook_writes(capsys: pytest.CaptureFixture[str], loss: str,
                                                                 args: list[str]) -> None:
    stable = _eval(capsys, "composed", loss, *args)
    textbook = _eval(capsys, "unstabilized", loss, *args)
    assert all(e is not None and e <= 2 for e in stable["ulp_error"]), stable
    assert any(kind in ("spurious_inf", "spurious_nan", "spurious_zero") for kind in textbook["nonfinite"]) or \
        max(e for e in textbook["ulp_error"] if e is not None) > 1e6, textbook


def test_the_compiled_graphs_show_the_rewrite() -> None:
    from harness.adapters.pytensor_adapter import _compiled
    import pytensor
    kinds = (("input", "float32", 1), ("target", "float32", 1))
    rewritten = pytensor.printing.debugprint(_compiled("bce_logits", "composed", "none", kinds, (), False), file="str")
    literal = pytensor.printing.debugprint(_compiled("bce_logits", "unstabilized", "none", kinds, (), False),
                                           file="str")
    assert "softplus" in rewritten.lower() and "sigmoid" not in rewritten.lower()
    assert "sigmoid" in literal.lower() and "softplus" not in literal.lower()


def test_one_compiled_function_serves_every_length() -> None:
    from harness import adapters
    from harness.adapters.pytensor_adapter import _compiled
    from harness.model import registry
    adapter, spec = adapters.load("pytensor"), registry.get("mse")
    before = _compiled.cache_info().misses
    for n in (3, 30, 300):
        out = adapter.run(spec, "composed", {"input": np.full(n, 1.5), "target": np.full(n, 0.5)}, "float64", "cpu",
                          "sum", {})
        assert out.values.tolist() == [float(n)] and out.result_dtype == "float64"
    assert _compiled.cache_info().misses - before <= 1
