"""The CLI contract: `lossbench eval --json` fields, framework behaviour shown as
it is, and bad input answered with one stderr line and exit code 2."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from fractions import Fraction

import mpmath
import pytest

from harness import adapters
from harness.measure import bandwidth
from harness.present.cli import main

from conftest import need

REQUIRED_KEYS = {"loss", "framework", "impl", "dtype", "device", "reduction", "value", "result_dtype", "reference",
                 "reference_float64", "ulp_error", "rel_error", "nonfinite"}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run_cli(capsys, "eval", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _significant_digits(decimal: str) -> int:
    mantissa = decimal.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_torch_bce_clamps_log_at_minus_100(capsys: pytest.CaptureFixture[str]) -> None:
    need("torch")
    record = eval_json(capsys, "bce", "--framework", "torch", "--dtype", "float32", "--input", "[0.0]",
                       "--target", "[1.0]")
    assert REQUIRED_KEYS <= set(record)
    # torch documents that BCELoss clamps its log outputs to >= -100.
    assert record["value"] == 100.0
    assert record["reference"] == "inf" and record["reference_float64"] == "inf"
    assert record["nonfinite"] == "missed_inf" and record["ulp_error"] is None
    assert record["result_dtype"] == "float32" and record["impl"] == "native"


def test_keras_bce_clips_probabilities_at_epsilon(capsys: pytest.CaptureFixture[str]) -> None:
    need("tensorflow")
    import keras

    record = eval_json(capsys, "bce", "--framework", "tensorflow", "--dtype", "float32", "--input", "[0.0]",
                       "--target", "[1.0]")
    # Keras documents clipping predictions to [epsilon, 1 - epsilon], epsilon = keras.config.epsilon().
    assert math.isclose(record["value"], -math.log(keras.config.epsilon()), rel_tol=1e-6)
    assert record["nonfinite"] == "missed_inf"


def test_reduction_none_gives_lists(capsys: pytest.CaptureFixture[str]) -> None:
    record = eval_json(capsys, "mse", "--framework", "numpy", "--impl", "naive", "--dtype", "float16",
                       "--reduction", "none", "--input", "[0.1, 2, \"inf\"]", "--target", "[0, 0, 0]")
    for key in ("value", "reference", "reference_float64", "ulp_error"):
        assert isinstance(record[key], list) and len(record[key]) == 3, key
    # 0.1 rounds to 0.0999755859375 in float16 before anything is computed.
    assert record["reference_float64"][0] == 0.0999755859375**2
    assert record["reference_float64"][1] == 4.0 and record["ulp_error"][1] == 0.0
    assert record["value"][2] == "inf" and record["nonfinite"][2] == "expected_inf"
    assert record["ulp_error"][2] is None


def test_reference_has_25_significant_digits(capsys: pytest.CaptureFixture[str]) -> None:
    record = eval_json(capsys, "cross_entropy", "--framework", "numpy", "--dtype", "float64",
                       "--input", "[[1, 2, 3]]", "--target", "[0]")
    assert _significant_digits(record["reference"]) >= 25
    # logsumexp([1,2,3]) - 1 = 2 + log(1 + e^-1 + e^-2), to 25 digits (independent formula).
    expected = 2 + math.log1p(math.exp(-1) + math.exp(-2))
    assert math.isclose(float(record["reference"]), expected, rel_tol=1e-15)
    assert record["reference_status"] == "settled"


def test_params_and_extra_args_reach_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    record = eval_json(capsys, "huber", "--framework", "numpy", "--dtype", "float64", "--param", "delta=0.5",
                       "--input", "[2.0]", "--target", "[0.0]")
    assert record["params"] == {"delta": 0.5}
    assert record["reference_float64"] == 0.5 * (2.0 - 0.25)  # delta (|d| - delta/2)
    record = eval_json(capsys, "contrastive", "--framework", "numpy", "--dtype", "float64",
                       "--input", "[[3, 0]]", "--arg", "input2=[[0, 4]]", "--target", "[1]")
    assert record["reference_float64"] == 12.5  # d = 5, l d^2 / 2


def test_losses_without_target(capsys: pytest.CaptureFixture[str]) -> None:
    # The penalty is the sum by default: 3^2 + 4^2 = 25 exactly.
    penalty = eval_json(capsys, "l2_penalty", "--framework", "numpy", "--dtype", "float32", "--input", "[3, 4]")
    assert (penalty["reduction"], penalty["value"], penalty["reference_float64"]) == ("sum", 25.0, 25.0)
    # Anchor (0, 0), positive (3, 4), negative (1, 0): max(0, 5 - 1 + 0.5) = 4.5.
    triplet = eval_json(capsys, "triplet_margin", "--framework", "numpy", "--dtype", "float64", "--input", "[[0, 0]]",
                        "--arg", "positive=[[3, 4]]", "--arg", "negative=[[1, 0]]", "--param", "margin=0.5")
    assert triplet["reference_float64"] == 4.5 and triplet["value"] == 4.5 and triplet["params"] == {"margin": 0.5}


def test_escalated_reference_reports_its_precision(capsys: pytest.CaptureFixture[str]) -> None:
    eps = 2.0**-30
    record = eval_json(capsys, "kl_div", "--framework", "numpy", "--dtype", "float64",
                       "--input", json.dumps([[0.5 + eps, 0.5 - eps]]), "--target", "[[0.5, 0.5]]")
    assert record["reference_precision_bits"] > 160


def test_framework_error_is_reported_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    need("torch")
    code, out, _ = run_cli(capsys, "eval", "multi_margin", "--framework", "torch", "--dtype", "float16",
                           "--input", "[[1, 2, 3]]", "--target", "[0]", "--json")
    record = json.loads(out)
    assert code == 1
    assert "not implemented for 'Half'" in record["error"] and record["value"] is None
    assert record["reference"] is not None


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", "hinge", "--framework", "numpy", "--dtype", "bfloat16",
                           "--input", "[0.5, -2]", "--target", "[1, 1]", "--reduction", "none")
    assert code == 0
    assert "ulp error" in out and "reference" in out and len(out.splitlines()) >= 4


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "--json")
    listing = json.loads(out)
    assert code == 0
    assert {row["name"] for row in listing["frameworks"]} == set(adapters.FRAMEWORKS)
    assert {row["name"] for row in listing["dtypes"]} == {"float16", "bfloat16", "float32", "float64"}
    assert all(row["version"] for row in listing["frameworks"] if row["available"])
    assert "cpu" in {row["name"] for row in listing["devices"]}
    assert len(listing["losses"]) >= 16


def test_list_text_shows_what_the_json_holds(capsys: pytest.CaptureFixture[str]) -> None:
    """Every section's text view names every entry of its JSON listing."""
    listing = json.loads(run_cli(capsys, "list", "--json")[1])
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for section, rows in listing.items():
        assert f"{section}:" in out
        assert all(f"  {row['name']} " in out for row in rows), section
    available = [row for row in listing["frameworks"] if row["available"]]
    assert all(f"impls: {', '.join(row['impls'])}" in out for row in available)
    assert all(f"modes: {', '.join(row['modes'])}" in out for row in available)
    assert {row["name"]: row["modes"] for row in available}.get("numpy") == ["eager"]


BASE = ["eval", "mse", "--framework", "numpy", "--dtype", "float32"]
BAD_INPUTS = {
    "regime without size": (["eval", "bce", "--framework", "numpy", "--dtype", "float32", "--regime", "typical"],
                            "--regime needs --size"),
    "regime with target": (["eval", "bce", "--framework", "numpy", "--dtype", "float32", "--regime", "typical",
                            "--size", "10", "--target", "[1]"], "drop --target"),
    "regime the loss lacks": (["eval", "bce", "--framework", "numpy", "--dtype", "float32", "--regime",
                               "near_overflow", "--size", "10"], "bce has no near_overflow regime"),
    "regime and input": (["eval", "bce", "--framework", "numpy", "--dtype", "float32", "--regime", "typical",
                          "--size", "10", "--input", "[0.5]"], "not allowed with"),
    "regime too large": (["eval", "bce", "--framework", "numpy", "--dtype", "float32", "--regime", "typical",
                          "--size", "200000"], "eval input too large"),
    "unknown loss": (["eval", "nosuch", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                      "--target", "[1]"], "unknown loss 'nosuch'"),
    "unknown framework": (["eval", "mse", "--framework", "mxnet", "--dtype", "float32", "--input", "[1]",
                           "--target", "[1]"], "invalid choice: 'mxnet'"),
    "unknown impl": (["eval", "mse", "--framework", "torch", "--impl", "naive", "--dtype", "float32",
                      "--input", "[1]", "--target", "[1]"], "no impl 'naive'"),
    "unknown dtype": (["eval", "mse", "--framework", "numpy", "--dtype", "float8", "--input", "[1]",
                       "--target", "[1]"], "invalid choice: 'float8'"),
    "unknown device": (BASE + ["--device", "tpu", "--input", "[1]", "--target", "[1]"], "invalid choice: 'tpu'"),
    "missing option": (["eval", "mse", "--framework", "numpy", "--input", "[1]", "--target", "[1]"], "--dtype"),
    "malformed JSON": (BASE + ["--input", "[1, 2", "--target", "[1, 2]"], "--input is not valid JSON"),
    "non-numeric value": (BASE + ["--input", "[\"one\"]", "--target", "[1]"], "must hold numbers"),
    "ragged list": (["eval", "cross_entropy", "--framework", "numpy", "--dtype", "float32",
                     "--input", "[[1, 2], [3]]", "--target", "[0, 0]"], "ragged"),
    "shape mismatch": (BASE + ["--input", "[1, 2]", "--target", "[1]"], "does not match input shape"),
    "probability above 1": (["eval", "bce", "--framework", "numpy", "--dtype", "float32", "--input", "[1.5]",
                             "--target", "[1]"], "must be probabilities in [0, 1]"),
    "negative soft target": (["eval", "soft_cross_entropy", "--framework", "numpy", "--dtype", "float32",
                              "--input", "[[1, 2]]", "--target", "[[-0.5, 1.5]]"], "probabilities in [0, 1]"),
    "hinge label 0": (["eval", "hinge", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                       "--target", "[0]"], "labels in {-1, +1}"),
    "contrastive label 2": (["eval", "contrastive", "--framework", "numpy", "--dtype", "float32",
                             "--input", "[[1, 2]]", "--arg", "input2=[[1, 2]]", "--target", "[2]"],
                            "labels in {0, 1}"),
    "class index out of range": (["eval", "cross_entropy", "--framework", "numpy", "--dtype", "float32",
                                  "--input", "[[1, 2, 3]]", "--target", "[3]"], "class index 3 out of range"),
    "negative class index": (["eval", "nll", "--framework", "numpy", "--dtype", "float32",
                              "--input", "[[-1, -2]]", "--target", "[-1]"], "out of range"),
    "fractional class index": (["eval", "cross_entropy", "--framework", "numpy", "--dtype", "float32",
                                "--input", "[[1, 2, 3]]", "--target", "[0.5]"], "integer class indices"),
    "wrong target count": (["eval", "cross_entropy", "--framework", "numpy", "--dtype", "float32",
                            "--input", "[[1, 2], [3, 4]]", "--target", "[0]"], "one value per row"),
    "missing extra arg": (["eval", "contrastive", "--framework", "numpy", "--dtype", "float32",
                           "--input", "[[1, 2]]", "--target", "[1]"], "needs argument 'input2'"),
    "unknown extra arg": (BASE + ["--input", "[1]", "--target", "[1]", "--arg", "weight=[1]"],
                          "no argument 'weight'"),
    "unknown param": (BASE + ["--input", "[1]", "--target", "[1]", "--param", "delta=1"], "no parameter 'delta'"),
    "bad param value": (["eval", "huber", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                         "--target", "[1]", "--param", "delta=-1"], "delta must be > 0"),
    "param not a number": (["eval", "huber", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                            "--target", "[1]", "--param", "delta=big"], "needs a number"),
    "param without value": (BASE + ["--input", "[1]", "--target", "[1]", "--param", "delta"], "NAME=VALUE"),
    "empty input": (BASE + ["--input", "[]", "--target", "[]"], "is empty"),
    "missing target": (BASE + ["--input", "[1]"], "needs argument 'target'"),
    "target for a penalty": (["eval", "l2_penalty", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                              "--target", "[1]"], "l2_penalty has no argument 'target'"),
    "negative msle value": (["eval", "msle", "--framework", "numpy", "--dtype", "float32", "--input", "[-0.5]",
                             "--target", "[1]"], "msle: input must be values >= 0"),
    "zero poisson rate": (["eval", "poisson_nll", "--framework", "numpy", "--dtype", "float32", "--input", "[0]",
                           "--target", "[1]"], "poisson_nll: input must be values > 0"),
    "zero variance": (["eval", "gaussian_nll", "--framework", "numpy", "--dtype", "float32", "--input", "[0]",
                       "--target", "[1]", "--arg", "var=[0]"], "gaussian_nll: var must be values > 0"),
    "triplet without negative": (["eval", "triplet_margin", "--framework", "numpy", "--dtype", "float32",
                                  "--input", "[[0, 0]]", "--arg", "positive=[[1, 0]]"], "needs argument 'negative'"),
    "negative focal gamma": (["eval", "focal", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                              "--target", "[1]", "--param", "gamma=-1"], "gamma must be >= 0"),
    "eval zero threads": (["eval", "mse", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                           "--target", "[1]", "--threads", "0"], "--threads: expected a positive integer, got '0'"),
    "unknown list section": (["list", "gpus"], "invalid choice: 'gpus'"),
    "sweep unknown loss": (["sweep", "--loss", "mse", "nosuch"], "unknown loss 'nosuch'"),
    "sweep unknown impl": (["sweep", "--impl", "fast"], "unknown impl 'fast'"),
    "sweep impl of another framework": (["sweep", "--framework", "numpy", "--impl", "native"],
                                        "unknown impl 'native'; expected one of naive, stable"),
    "sweep unknown dtype": (["sweep", "--dtype", "float8"], "invalid choice: 'float8'"),
    "sweep unknown regime": (["sweep", "--regime", "calm"], "invalid choice: 'calm'"),
    "sweep unknown framework": (["sweep", "--framework", "mxnet"], "invalid choice: 'mxnet'"),
    "sweep zero size": (["sweep", "--sizes", "0"], "expected a positive integer"),
    "sweep fractional size": (["sweep", "--sizes", "10.5"], "expected a positive integer"),
    "sweep word size": (["sweep", "--sizes", "many"], "expected a positive integer"),
    "sweep zero jobs": (["sweep", "--jobs", "0"], "expected a positive integer"),
    "sweep zero timeout": (["sweep", "--cell-timeout", "0"], "--cell-timeout must be a finite number of seconds"),
    "sweep nan timeout": (["sweep", "--cell-timeout", "nan"], "--cell-timeout must be a finite number of seconds"),
    "sweep infinite timeout": (["sweep", "--cell-timeout", "inf"], "--cell-timeout must be a finite number"),
    "sweep huge timeout": (["sweep", "--cell-timeout", "1e300"], "--cell-timeout must be a finite number"),
    "sweep infinite size": (["sweep", "--sizes", "inf"], "expected a positive integer, got 'inf'"),
    "sweep size beyond memory": (["sweep", "--sizes", "1e20"], "1e20 is more than"),
    "sweep seeds beyond memory": (["sweep", "--seeds", "1e20"], "1e20 is more than 10,000"),
    "repeated param": (["eval", "huber", "--framework", "numpy", "--dtype", "float32", "--input", "[1]",
                        "--target", "[0]", "--param", "delta=1", "--param", "delta=2"], "--param delta given twice"),
    "sweep quick and full": (["sweep", "--quick", "--full"], "not allowed with argument"),
    "results without store": (["results", "--db", "/nonexistent/r.sqlite"], "no results store"),
    "sweep unknown timed regime": (["sweep", "--time", "--time-regime", "calm"], "invalid choice: 'calm'"),
    "bandwidth zero elements": (["bandwidth", "--elements", "0"], "expected a positive integer"),
    "gradient of an unreduced loss": (BASE + ["--input", "[1]", "--target", "[0]", "--reduction", "none", "--grad"],
                                      "--grad needs a reduced loss"),
    "results grad and speed": (["results", "--grad", "--speed"], "not allowed with argument"),
    "grad regime without grad": (["sweep", "--grad-regime", "edge"], "--grad-regime needs --grad"),
    "time size without time": (["sweep", "--time-size", "10"], "--time-size needs --time"),
    "time size not swept": (["sweep", "--sizes", "10", "100", "--time", "--time-size", "1000"],
                            "--time-size 1000 is not one of the swept sizes (10, 100)"),
    "unknown reference engine": (BASE + ["--input", "[1]", "--target", "[0]", "--reference-engine", "sympy"],
                                 "invalid choice: 'sympy'"),
    "bandwidth unknown framework": (["bandwidth", "--framework", "mxnet"], "invalid choice: 'mxnet'"),
    "class index beyond int64": (["eval", "cross_entropy", "--framework", "numpy", "--dtype", "float32",
                                  "--input", "[[1, 2, 3]]", "--target", "[1e30]"],
                                 "class index 1e+30 is out of range"),
    "JSON 900 levels deep": (BASE + ["--input", "[" * 900 + "1" + "]" * 900, "--target", "[0]"],
                             "nested too deeply (at most 64 levels)"),
    "more than 64 dimensions": (BASE + ["--input", "[" * 70 + "1" + "]" * 70, "--target", "[0]"],
                                "nested too deeply (at most 64 levels)"),
    "input file missing": (BASE + ["--input", "@/nonexistent/in.json", "--target", "[0]"],
                           "--input @/nonexistent/in.json: cannot read /nonexistent/in.json: No such file"),
    "input beyond the eval limit": (BASE + ["--input", json.dumps([0.5] * 300_000), "--target", "[0]"],
                                    "eval takes at most 200,000 values unless --max-elements raises it"),
    "input beyond memory": (BASE + ["--input", "[" + "," * 2**24 + "]", "--target", "[0]", "--max-elements",
                                    "1e12"], "GiB of memory available"),
    "a number of 20000 digits": (BASE + ["--input", "[1" + "0" * 20000 + "]", "--target", "[0]"],
                                 "holds a number of 20,001 characters; at most 10,000"),
    "a typed value rounding out of the domain": (
        ["eval", "poisson_nll", "--framework", "numpy", "--dtype", "float16", "--input", "[1e-10]", "--target", "[1]"],
        "got 1e-10 at position 0, which rounds to 0.0 in float16"),
}


def test_eval_grad_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """d/dz of the summed bce_logits at z = -1000, y = 1 is -sigmoid(1000): -1 to
    far below any ulp; at z = 0, y = 0 it is sigmoid(0) = 1/2 exactly."""
    record = eval_json(capsys, "bce_logits", "--framework", "numpy", "--dtype", "float32", "--input", "[-1000, 0]",
                       "--target", "[1, 0]", "--reduction", "sum", "--grad")
    assert record["grad"] == [-1.0, 0.5] and record["grad_method"] == "numpy analytic"
    assert [float(r) for r in record["grad_reference"]] == [-1.0, 0.5]
    assert record["grad_reference_status"] == ["settled", "settled"]
    assert record["grad_ulp_error"] == [0.0, 0.0] and record["grad_nonfinite"] == [None, None]


def test_eval_grad_is_shaped_like_the_input_and_marks_corners(capsys: pytest.CaptureFixture[str]) -> None:
    # mean over 2 rows: d/dz_j = (softmax_j - [j = t]) / 2; softmax of equal logits is 1/3 each.
    record = eval_json(capsys, "cross_entropy", "--framework", "numpy", "--dtype", "float64",
                       "--input", "[[0, 0, 0], [5, 5, 5]]", "--target", "[0, 2]", "--grad")
    assert [[float(v) for v in row] for row in record["grad_reference"]] == \
        [[-1 / 3, 1 / 6, 1 / 6], [1 / 6, 1 / 6, -1 / 3]]
    assert len(record["grad"]) == 2 and all(len(row) == 3 for row in record["grad_ulp_error"])
    record = eval_json(capsys, "mae", "--framework", "numpy", "--dtype", "float32", "--input", "[1, 2]",
                       "--target", "[1, 0]", "--grad")  # |d| has no derivative at d = 0
    assert record["grad_reference_status"] == ["undefined", "settled"]
    assert record["grad_ulp_error"][0] is None and record["grad_reference"] == [None, "0.5" + "0" * 29]


def test_both_reference_engines_print_the_same_reference(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's midpoint row and a tiny gradient: Arb balls and mpmath intervals agree
    on every stored and printed number."""
    argv = ["cross_entropy", "--framework", "numpy", "--dtype", "float64", "--reduction", "mean",
            "--input", "[[-5.684341886080802e-14, 1000], [0, -690]]", "--target", "[0, 1]", "--grad"]
    fields = ("reference", "reference_rounded", "reference_status", "grad_reference", "grad_reference_rounded",
              "grad_reference_status")
    records = [eval_json(capsys, *argv, "--reference-engine", engine) for engine in ("flint", "mpmath")]
    assert [{f: r[f] for f in fields} for r in records][0] == [{f: r[f] for f in fields} for r in records][1]
    assert records[0]["reference_status"] == "settled"


def test_decimals_print_proven_digits_far_below_float64(capsys: pytest.CaptureFixture[str]) -> None:
    """d/dz of the summed bce_logits at z = -1e300, y = 0 is sigmoid(-1e300) = e^-1e300
    (1 + ...): far below float64, printed with its exact binary exponent, every digit
    checked against mpmath at a precision that holds it."""
    record = eval_json(capsys, "bce_logits", "--framework", "numpy", "--dtype", "float64", "--input", "[-1e300]",
                       "--target", "[0]", "--reduction", "sum", "--grad")
    (printed,) = record["grad_reference"]
    mantissa, exponent = printed.split("*2^")
    with mpmath.workprec(2000):
        exact = mpmath.exp(mpmath.mpf(-1e300))
        binade = int(mpmath.floor(mpmath.log(exact, 2)))
        expected = mpmath.nstr(exact / mpmath.ldexp(1, binade), len(mantissa) - 1, strip_zeros=False)
    assert int(exponent) == binade and mantissa == expected and len(mantissa) >= 25


def test_eval_grad_of_an_impl_without_one_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", "focal", "--framework", "numpy", "--impl", "naive", "--dtype", "float32",
                           "--input", "[1]", "--target", "[1]", "--grad", "--json")
    assert code == 1 and "no gradient for focal" in json.loads(out)["grad_error"]


@pytest.mark.parametrize("argv, message", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("lossbench: error: "), err
    assert message in err


def test_a_literal_beyond_every_dtype_rounds_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """1e999999999 is inf in every dtype and 1e-999999999 is 0: rounded without
    building their billion-digit exact values (which took minutes)."""
    record = eval_json(capsys, "mse", "--framework", "numpy", "--dtype", "float64", "--reduction", "none",
                       "--input", "[1e999999999, -1e-999999999, 1e99999999999999999999]", "--target", "[0, 0, 0]")
    assert record["value"] == ["inf", 0.0, "inf"] and record["reference_float64"] == ["inf", 0.0, "inf"]


def test_input_read_from_a_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    values = [0.25 * i for i in range(40_000)]  # 400 KB of JSON: beyond one argument's 128 KiB
    (tmp_path / "in.json").write_text(json.dumps(values))
    (tmp_path / "target.json").write_text(json.dumps([0] * len(values)))
    record = eval_json(capsys, "mse", "--framework", "numpy", "--dtype", "float64", "--input",
                       f"@{tmp_path / 'in.json'}", "--target", f"@{tmp_path / 'target.json'}")
    exact = sum(Fraction(v) ** 2 for v in values) / len(values)  # every square and the sum are exact here
    assert Fraction(record["reference_float64"]) == exact


def test_malformed_adapter_entries_are_listed_unavailable() -> None:
    env = dict(os.environ, LOSSBENCH_ADAPTERS="=,x=,y=json", LOSSBENCH_DISABLE="torch,tensorflow")
    proc = subprocess.run([sys.executable, "-m", "harness", "list", "frameworks", "--json"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["numpy"]["available"]
    assert "'=' names no module" in rows["="]["reason"] and "'x' names no module" in rows["x"]["reason"]
    assert "module json defines no ADAPTER" in rows["y"]["reason"] and not rows["y"]["available"]


def test_sweep_on_a_missing_device_is_refused_before_any_store(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    if "cuda" in adapters.load("numpy").devices():
        pytest.skip("numpy has a CUDA device here")
    code, _, err = run_cli(capsys, "sweep", "--loss", "mse", "--framework", "numpy", "--device", "cuda",
                           "--db", str(tmp_path / "r.sqlite"), "--no-progress")
    assert code == 2 and "no chosen framework offers device cuda on this machine" in err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_sweep_selecting_nothing(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    # bce takes only probabilities and declares no near_overflow regime.
    code, _, err = run_cli(capsys, "sweep", "--loss", "bce", "--framework", "numpy", "--regime", "near_overflow",
                           "--db", str(tmp_path / "r.sqlite"), "--no-progress")
    assert code == 2 and "select no cell" in err and len(err.strip().splitlines()) == 1


def test_unavailable_framework(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSSBENCH_DISABLE", "tensorflow")
    code, _, err = run_cli(capsys, "eval", "mse", "--framework", "tensorflow", "--dtype", "float32",
                           "--input", "[1]", "--target", "[1]")
    assert code == 2 and "tensorflow is disabled" in err and len(err.strip().splitlines()) == 1


def test_unavailable_device(capsys: pytest.CaptureFixture[str]) -> None:
    need("torch")
    if "cuda" in adapters.load("torch").devices():
        pytest.skip("this machine has a CUDA device")
    code, _, err = run_cli(capsys, "eval", "mse", "--framework", "torch", "--dtype", "float32", "--device", "cuda",
                           "--input", "[1]", "--target", "[1]")
    assert code == 2 and "device cuda is not available to torch" in err


def test_bandwidth_on_a_missing_device(capsys: pytest.CaptureFixture[str]) -> None:
    if "cuda" in adapters.load("numpy").devices():
        pytest.skip("numpy has a CUDA device here")
    code, _, err = run_cli(capsys, "bandwidth", "--framework", "numpy", "--device", "cuda")
    assert code == 2 and "numpy has no cuda device here" in err and len(err.strip().splitlines()) == 1


def test_bandwidth_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "bandwidth", "--framework", "numpy", "--elements", "4096", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["kernel"] for r in rows] == ["copy", "scale", "add", "triad"]
    for r in rows:
        moved = bandwidth.ARRAYS_MOVED[r["kernel"]] * 8 * 4096  # STREAM's counts: tests/test_bandwidth.py
        assert r["bytes_moved"] == moved and r["gbps"] == pytest.approx(moved / r["best_seconds"] / 1e9)


def test_real_process_prints_no_traceback() -> None:
    env = dict(os.environ, LOSSBENCH_DISABLE="torch,tensorflow")
    proc = subprocess.run([sys.executable, "-m", "harness", "eval", "bce", "--framework", "numpy", "--dtype",
                           "float32", "--input", "[2.0]", "--target", "[1]"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run([sys.executable, "-m", "harness", "eval", "bce", "--framework", "numpy", "--dtype",
                           "float32", "--input", "[0.25]", "--target", "[1]", "--json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    record = json.loads(proc.stdout)
    assert re.fullmatch(r"1\.386294361119890618834464242.*", record["reference"])  # -log(1/4) = 2 log 2


def test_output_piped_into_a_reader_that_leaves_is_not_an_error() -> None:
    """`lossbench eval ... | head -1`: a real pipe whose reader closes after one line;
    the 20000-line table cannot fit in the pipe, so lossbench meets the broken pipe,
    and says nothing about it (exit 0), as the pipe was the user's doing."""
    zeros = json.dumps([0] * 20000)
    process = subprocess.Popen([sys.executable, "-m", "harness", "eval", "mse", "--framework", "numpy", "--dtype",
                                "float32", "--reduction", "none", "--input", zeros, "--target", zeros],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ,
                                                                                         LOSSBENCH_DISABLE="tensorflow,torch"))
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""
