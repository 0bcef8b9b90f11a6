"""`lossbench compare` on real sweeps: numpy's stable impl against its naive one
relabelled as stable under another version (what an upgrade that broke a loss
looks like), runs of one store, and the exit codes."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from harness.present.cli import main
from harness.present.compare import Side, _slower, _ulp_moved

SWEEP = ["sweep", "--loss", "log_cosh", "bce_logits", "--framework", "numpy", "--dtype", "float32",
         "--regime", "typical", "near_overflow", "--sizes", "100", "--jobs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(stable, naive relabelled as stable with numpy version '0.0-relabelled')."""
    folder = tmp_path_factory.mktemp("compare")
    stable, naive = folder / "stable.sqlite", folder / "naive.sqlite"
    assert main([*SWEEP, "--impl", "stable", "--db", str(stable)]) == 0
    assert main([*SWEEP, "--impl", "naive", "--db", str(naive)]) == 0
    with sqlite3.connect(naive) as db:
        db.execute("UPDATE cells SET impl = 'stable', framework_version = '0.0-relabelled'")
    return stable, naive


def _compare(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["compare", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_broken_upgrade_is_less_accurate_and_exits_1(stores: tuple[Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    stable, naive = stores
    code, found = _compare(capsys, str(stable), str(naive))
    assert code == 1 and found["worse"]
    assert found["matched"] == 2 * 2  # losses x regimes
    worse = {(c["loss"], c["regime"]) for c in found["less_accurate"]}
    # naive log_cosh overflows cosh and naive bce_logits saturates sigmoid on large inputs
    assert ("log_cosh", "near_overflow") in worse and ("bce_logits", "near_overflow") in worse
    assert found["framework_versions"]["numpy"]["head"] == ["0.0-relabelled"]
    assert not found["base_only"] and not found["head_only"]


def test_the_other_way_round_is_more_accurate_and_exits_0(stores: tuple[Path, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    stable, naive = stores
    code, found = _compare(capsys, str(naive), str(stable))
    assert code == 0 and not found["worse"]
    assert {(c["loss"], c["regime"]) for c in found["more_accurate"]} >= {("log_cosh", "near_overflow")}


def test_a_store_against_itself_changes_nothing(stores: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    stable, _ = stores
    code, found = _compare(capsys, str(stable), str(stable))
    assert code == 0
    assert all(not found[g] for g in ("less_accurate", "more_accurate", "failed", "fixed", "slower", "faster"))


def test_runs_of_one_store(stores: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """STORE:RUN_ID takes the cells as of that run: a second run's new size is head-only."""
    db = tmp_path / "runs.sqlite"
    shutil.copy(stores[0], db)
    assert main([*SWEEP[:-6], "--sizes", "10", "--jobs", "1", "--no-progress", "--impl", "stable",
                 "--db", str(db)]) == 0
    capsys.readouterr()
    code, found = _compare(capsys, f"{db}:1", str(db))
    assert code == 0
    assert found["head_only"] and {c["size"] for c in found["head_only"]} == {10}
    assert found["base"].endswith(":1")


def test_text_output_names_the_changes(stores: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    stable, naive = stores
    assert main(["compare", str(stable), str(naive)]) == 1
    out = capsys.readouterr().out
    assert "less accurate (" in out and "near_overflow" in out and "something got worse" in out
    assert "numpy: " in out and "0.0-relabelled" in out


@pytest.mark.parametrize("argv", [["nowhere.sqlite", "nowhere.sqlite"], ["STABLE:9", "STABLE"]])
def test_bad_sides_exit_2(argv: list[str], stores: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("STABLE", str(stores[0])) for a in argv]
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("no results store" in err or "has no run 9" in err)


def test_side_parsing() -> None:
    assert Side.parse("a/b.sqlite:3") == Side(Path("a/b.sqlite"), 3)
    assert Side.parse("a/b.sqlite") == Side(Path("a/b.sqlite"))
    assert Side.parse("c:/x.sqlite") == Side(Path("c:/x.sqlite"))  # not a run id


@pytest.mark.parametrize(("before", "after", "worse"), [
    (0.5, 1.6, True),        # more than 2x and at least 1 ulp up
    (0.5, 1.4, False),       # 2.8x but less than 1 ulp
    (10.0, 19.0, False),     # 9 ulp but less than 2x
    (3.0, float("inf"), True),
    (float("inf"), float("inf"), False),
    (None, 5.0, False),
])
def test_ulp_threshold(before: float | None, after: float | None, worse: bool) -> None:
    assert _ulp_moved(before, after, 2.0) is worse


@pytest.mark.parametrize(("before", "after", "stdev", "slower"), [
    (1.0, 1.2, 0.01, True),   # 20% and 20 standard deviations
    (1.0, 1.05, 0.001, False),  # beyond noise but under 10%
    (1.0, 1.2, 0.1, False),   # 20% but within 3 standard deviations
])
def test_time_threshold(before: float, after: float, stdev: float, slower: bool) -> None:
    row = {"forward_seconds": before, "forward_stdev": stdev}
    assert _slower(row, {"forward_seconds": after, "forward_stdev": stdev}, "forward_seconds", "forward_stdev",
                   1.1) is slower


def test_report_with_a_baseline_says_what_changed(stores: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    stable, naive = stores
    out = tmp_path / "out"
    assert main(["report", "--db", str(naive), "--baseline", str(stable), "--out", str(out),
                 "--asv-results", str(tmp_path / "none")]) == 0
    capsys.readouterr()
    summary, page = (out / "summary.md").read_text(), (out / "index.html").read_text()
    assert "## Changes since" in summary and "<h2>Changes since" in page
    assert "4 less accurate" in summary and "less accurate: log\\_cosh numpy stable float32 cpu near\\_overflow" \
        in summary
    assert main(["report", "--db", str(naive), "--baseline", f"{stable}:5", "--out", str(out)]) == 2
