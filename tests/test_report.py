"""The report, recommendations and the main job, on a small real sweep: every
file written and referenced, the choice the stored numbers imply, bad
arguments refused."""
from __future__ import annotations

import html
import os
import shutil
import json
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import adapters
from harness.model import registry
from harness.present.render import describe
from harness.present import report
from harness.present.commands import sweeping
from harness.present.cli import main
from harness.measure.refcache import ReferenceCache
from harness.store import open_store
from harness.running.sweep import SweepConfig, run_sweep

SMALL = dict(losses=("mse", "cross_entropy"), frameworks=("numpy",), impls=None, dtypes=("float32", "bfloat16"),
             devices=("cpu",), regimes=("typical", "edge"), sizes=(100, 1000), widths=(10,), seeds=1, jobs=2)
# (impl, dtype) choices per loss in SMALL: NumPy's impls of each loss times the dtypes.
CHOICES = len(adapters.load("numpy").impl_names("mse")) * len(SMALL["dtypes"])


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A timed sweep with gradients (timing only the typical cells) and one atlas entry."""
    folder = tmp_path_factory.mktemp("sweep")
    with open_store(folder / "r.sqlite") as store:
        run_sweep(SweepConfig(**SMALL, time=True, grad=True), store, ReferenceCache(folder / "refcache"))
    assert main(["atlas", "--loss", "mse", "--framework", "numpy", "--db", str(folder / "r.sqlite"),
                 "--no-progress"]) == 0
    return folder / "r.sqlite"


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")
        assert tag != "script" and not any(v and "http" in v for _, v in attrs), "the page must work offline"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _asv_result(folder: Path) -> Path:
    """An asv result file as asv 0.6 writes one, with one anchor case and one other."""
    machine = folder / "asv" / "machine"
    machine.mkdir(parents=True)
    (machine / "machine.json").write_text("{}")
    columns = ["result", "params", "version"]
    entry = [[2e-5, 7e-4], [["'mse/torch:native/float32/1000'", "'hinge/numpy:naive/float16/1000'"]], "v"]
    (machine / "abc-existing.json").write_text(json.dumps(
        {"date": 1_795_000_000_000, "result_columns": columns, "results": {"losses.Forward.time_forward": entry}}))
    return folder / "asv"


def test_report_writes_every_file_and_the_page_references_only_existing_images(store_path: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "report"
    asv = _asv_result(tmp_path)
    assert main(["report", "--db", str(store_path), "--out", str(out), "--asv-results", str(asv)]) == 0
    expected = {"accuracy_typical.svg", "accuracy_all_regimes.svg", "error_vs_size.png", "throughput_vs_size.png",
                "bandwidth_fraction_vs_size.png", "accuracy_vs_speed.png", "gradient_accuracy.svg", "asv_history.png"}
    assert {p.name for p in out.iterdir()} == expected | {"index.html", "summary.md", report.FIGURE_CACHE, "loss"}
    page = _Images()
    page.feed((out / "index.html").read_text())
    page.close()
    assert set(page.sources) == expected
    for source in page.sources:
        start = (out / source).read_bytes()[:8]
        assert start == (b"<?xml ve" if source.endswith(".svg") else b"\x89PNG\r\n\x1a\n"), source
    text = " ".join(page.text)
    with open_store(store_path) as store:
        environment = store.runs()[0].environment
        limit = max(b["gbps"] for b in store.bandwidth())
        entries = store.atlas()
    assert environment["cpu"] in text and f"memory bandwidth limit (cpu): {limit:.1f} GB/s" in text
    assert entries
    for entry in entries:  # the atlas as `lossbench atlas` describes it, every line
        assert all(line.strip() in text for line in describe(entry))
    summary = (out / "summary.md").read_text()
    assert all(f"]({name})" in summary for name in expected)
    assert report.asv_history(asv) == {"mse/torch:native/float32/1000": [(1_795_000_000.0, 2e-5)]}


def test_bandwidth_limit_comes_from_the_latest_run_that_measured_it(store_path: Path, tmp_path: Path) -> None:
    """An untimed run after the timed one measures no bandwidth; the page keeps the timed run's limit."""
    db = tmp_path / "r.sqlite"
    db.write_bytes(store_path.read_bytes())
    with open_store(db) as store:
        limit = max(b["gbps"] for b in store.bandwidth())
        run_sweep(SweepConfig(**{**SMALL, "losses": ("mse",), "regimes": ("typical",), "sizes": (10,)}), store,
                  ReferenceCache(tmp_path / "refcache"))
        assert store.bandwidth(store.runs()[-1].id) == []
    main(["report", "--db", str(db), "--out", str(tmp_path / "out"), "--asv-results", str(tmp_path / "none")])
    assert f"memory bandwidth limit (cpu): {limit:.1f} GB/s" in (tmp_path / "out" / "index.html").read_text()


def test_report_of_an_untimed_store_leaves_out_the_speed_figures(tmp_path: Path) -> None:
    with open_store(tmp_path / "r.sqlite") as store:
        run_sweep(SweepConfig(**{**SMALL, "losses": ("mse",), "regimes": ("typical",)}), store,
                  ReferenceCache(tmp_path / "refcache"))
        written = report.build(store, tmp_path / "out", tmp_path / "no-asv")
    assert [f.file for f in written.figures] == ["accuracy_typical.svg", "accuracy_all_regimes.svg",
                                                 "error_vs_size.png"]


def _expected_choice(store_path: Path, loss: str, size: int, bound: float) -> tuple[str, str, str] | None:
    """The fastest qualifying choice, read from the stored rows here and now."""
    with open_store(store_path) as store:
        rows = [r for r in store.cells() if r["loss"] == loss and r["size"] == size and r["regime"] == "typical"]
    ok = [r for r in rows if r["status"] == "ok" and not r["unexpected_nonfinite"] and r["forward_seconds"]
          and max(v for v in (r["max_ulp"], r["reduced_ulp"]) if v is not None) <= bound]
    best = min(ok, key=lambda r: r["forward_seconds"], default=None)
    return (best["framework"], best["impl"], best["dtype"]) if best else None


def _worsts(store_path: Path, loss: str, size: int) -> list[float]:
    with open_store(store_path) as store:
        return sorted(max(v for v in (r["max_ulp"], r["reduced_ulp"]) if v is not None) for r in store.cells()
                      if r["loss"] == loss and r["size"] == size and r["regime"] == "typical")


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_recommend_returns_the_choice_the_stored_numbers_imply(store_path: Path, loss: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    worsts = _worsts(store_path, loss, 1000)
    bound = (worsts[0] + worsts[1]) / 2 if worsts[1] > worsts[0] else worsts[0]  # excludes the rest, if they differ
    code = main(["recommend", "--loss", loss, "--max-ulp", repr(bound), "--db", str(store_path), "--json"])
    found = json.loads(capsys.readouterr().out)
    expected = _expected_choice(store_path, loss, 1000, bound)
    assert code == 0 and expected is not None
    assert found["size"] == 1000  # the largest timed size by default
    chosen = found["choice"]
    assert (chosen["framework"], chosen["impl"], chosen["dtype"]) == expected
    assert len(found["runners_up"]) + 1 + len(found["excluded"]) == CHOICES
    assert all("too inaccurate" in e["reason"] for e in found["excluded"])


def test_recommend_without_timing_ranks_by_accuracy(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Edge cells are not timed: the choices within the bound are ranked by their
    stored accuracy, and the answer says speed was not measured."""
    code = main(["recommend", "--loss", "mse", "--regime", "edge", "--size", "1000", "--max-ulp", "1e9",
                 "--db", str(store_path), "--json"])
    found = json.loads(capsys.readouterr().out)
    with open_store(store_path) as store:
        accurate = {f"{r['framework']}:{r['impl']} {r['dtype']}": max(r["max_ulp"] or 0, r["reduced_ulp"] or 0)
                    for r in store.cells()
                    if r["loss"] == "mse" and r["regime"] == "edge" and r["size"] == 1000 and r["status"] == "ok"
                    and not r["unexpected_nonfinite"] and (r["max_ulp"] or 0) <= 1e9
                    and (r["reduced_ulp"] or 0) <= 1e9}
    assert code == 0 and accurate and found["timed"] is False
    ranked = [found["choice"], *found["runners_up"]]
    assert {f"{c['framework']}:{c['impl']} {c['dtype']}" for c in ranked} == set(accurate)
    assert [c["error"] for c in ranked] == sorted(accurate.values())
    assert all(c["seconds"] is None for c in ranked)
    assert not any(e["reason"].startswith("not timed") for e in found["excluded"])
    main(["recommend", "--loss", "mse", "--regime", "edge", "--size", "1000", "--max-ulp", "1e9",
          "--db", str(store_path)])
    assert "speed was not measured at this size" in capsys.readouterr().out


def test_recommend_exits_1_when_nothing_measured_qualifies(store_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--loss", "mse", "--size", "10", "--max-ulp", "4", "--db", str(store_path)])
    out = capsys.readouterr().out
    assert code == 1 and out.count("not measured at this size") == CHOICES
    assert "nothing measured qualifies" in out


@pytest.mark.parametrize("argv, message", [
    (["recommend", "--loss", "nosuch", "--max-ulp", "4"], "unknown loss"),
    (["recommend", "--loss", "mse"], "one of the arguments --max-ulp --max-rel-error is required"),
    (["recommend", "--loss", "mse", "--max-ulp", "4", "--max-rel-error", "0.1"], "not allowed with"),
    (["recommend", "--loss", "mse", "--max-ulp", "-1"], "expected a positive number"),
    (["recommend", "--loss", "mse", "--max-ulp", "nan"], "expected a positive number"),
    (["recommend", "--loss", "mse", "--max-ulp", "4", "--size", "0"], "expected a positive integer"),
    (["recommend", "--loss", "mse", "--max-ulp", "4", "--regime", "calm"], "invalid choice"),
    (["recommend", "--loss", "mse", "--max-ulp", "4", "--db", "/nonexistent/r.sqlite"], "no results store"),
    (["report", "--db", "/nonexistent/r.sqlite"], "no results store"),
    (["run", "--jobs", "0"], "expected a positive integer"),
])
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_run_sweeps_times_grades_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The main job on a one-loss grid: every cell graded, the smallest and largest
    sizes timed, the report written, its path printed last; a rerun finds the atlas
    current and makes nothing again."""
    grid = {k: v for k, v in SMALL.items() if k not in ("seeds", "jobs")}  # what default_config gives
    monkeypatch.setattr(sweeping, "default_config", lambda quick=True: {**grid, "losses": ("mse",),
                                                                        "regimes": ("typical",), "sizes": (10, 30, 100)})
    command = ["run", "--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "out"), "--no-progress", "--jobs", "1"]
    assert main(command) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(last) == (tmp_path / "out" / "index.html").resolve() and Path(last).exists()
    with open_store(tmp_path / "r.sqlite") as store:
        cells, gradients = list(store.cells()), list(store.gradients())
        assert len(cells) == len(gradients) == 3 * CHOICES
        assert all(bool(c["forward_seconds"]) == (c["size"] != 30) for c in cells)
        atlas = store.atlas()
        assert atlas
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "0 stored now (nothing new)" in printed and "atlas: 0 entries stored (the others are current)" in printed
    with open_store(tmp_path / "r.sqlite") as store:
        assert store.atlas() == atlas


def test_heatmap_takes_errors_beyond_float64(tmp_path: Path) -> None:
    """An ULP error too large for float64 is stored as inf; it takes the top colour, not the page down."""
    rows = [{"loss": "mse", "framework": "numpy", "impl": "naive", "dtype": "float16", "status": "ok", "mode": "eager",
             "unexpected_nonfinite": 0, "max_ulp": float("inf"), "reduced_ulp": 3.0},
            {"loss": "mse", "framework": "numpy", "impl": "stable", "dtype": "float16", "status": "ok", "mode": "eager",
             "unexpected_nonfinite": 0, "max_ulp": 0.4, "reduced_ulp": None},
            {"loss": "mae", "framework": "numpy", "impl": "stable", "dtype": "float64", "status": "ok", "mode": "eager",
             "unexpected_nonfinite": 0, "max_ulp": 1.7e308, "reduced_ulp": None}]  # finite, near float64's top
    report._heatmap(rows, tmp_path / "h.png", "inf", report.worst_ulp)
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_draws_only_the_figures_whose_data_changed(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", "--db", str(store_path), "--out", str(out)]) == 0
    drawn = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    cache = json.loads((out / report.FIGURE_CACHE).read_text())
    cache["error_vs_size.png"]["digest"] = "data that changed"
    (out / report.FIGURE_CACHE).write_text(json.dumps(cache))
    time.sleep(0.01)
    assert main(["report", "--db", str(store_path), "--out", str(out)]) == 0
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert again.keys() == drawn.keys()
    assert [name for name in drawn if again[name] != drawn[name]] == ["error_vs_size.png"]


def test_figures_drawn_by_several_processes_are_those_one_process_draws(store_path: Path, tmp_path: Path) -> None:
    """--jobs 2 spawns drawing processes; the files, and every PNG byte, are the same
    (SVGs differ only in their date and random clip ids)."""
    for jobs in ("1", "2"):
        assert main(["report", "--db", str(store_path), "--out", str(tmp_path / jobs), "--jobs", jobs,
                     "--asv-results", str(tmp_path / "none")]) == 0
    one, two = ({p.relative_to(tmp_path / j) for p in (tmp_path / j).rglob("*")} for j in ("1", "2"))
    assert one == two and any(p.suffix == ".png" for p in one)
    assert all((tmp_path / "1" / p).read_bytes() == (tmp_path / "2" / p).read_bytes()
               for p in one if p.suffix == ".png" or p.name == report.FIGURE_CACHE)
    drawn = json.loads((tmp_path / "2" / report.FIGURE_CACHE).read_text())
    assert drawn and all(entry["drawn"] in (True, False) for entry in drawn.values())


def test_compiled_against_eager_takes_errors_beyond_float64(tmp_path: Path) -> None:
    """Cells measured both ways, one with an error too large for float64 (stored inf),
    one near float64's top: the figure is drawn, the axis capped."""
    key = dict(loss="mse", params="{}", framework="torch", framework_version="2", impl="native", dtype="float64",
               device="cpu", regime="wide", size=10, width=1, seed=0, status="ok", unexpected_nonfinite=0,
               reduced_ulp=None)
    rows = [{**key, "mode": mode, "max_ulp": ulp, "regime": regime}
            for regime, eager, compiled in (("wide", float("inf"), 1e307), ("edge", 0.5, 3.0))
            for mode, ulp in (("eager", eager), ("compiled", compiled))]
    pairs = report.mode_pairs(rows)
    assert len(pairs) == 2 and all(e["mode"] == "eager" and c["mode"] == "compiled" for e, c in pairs)
    report._modes_figure(pairs, tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_least_accurate_cells_list_each_cell_once_at_its_worst_size(store_path: Path) -> None:
    """Sizes of one cell are one problem: one row, at the size with the largest error."""
    with open_store(store_path) as store:
        cells = list(store.cells())
        context = report._context(store, cells, list(store.gradients()))
    listed = [tuple(r[c] for c in report._CELL_APART_FROM_SIZE) for r in context["worst"]]
    assert listed and len(listed) == len(set(listed))
    for row in context["worst"]:
        same = [r for r in cells if r["status"] == "ok" and report.worst_ulp(r) is not None
                and all(r[c] == row[c] for c in report._CELL_APART_FROM_SIZE)]
        assert row["sizes"] == len(same)
        assert report.worst_ulp(row) == max(report.worst_ulp(r) for r in same)
    assert any(row["sizes"] == len(SMALL["sizes"]) for row in context["worst"])


def test_the_first_screen_answers_per_loss_as_recommend_does(store_path: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """One row per loss, before anything else, in index.html and summary.md; its
    choices are what `lossbench recommend` says under the same bounds."""
    out = tmp_path / "out"
    assert main(["report", "--db", str(store_path), "--out", str(out), "--asv-results", str(tmp_path / "no")]) == 0
    capsys.readouterr()
    page, summary = (out / "index.html").read_text(), (out / "summary.md").read_text()
    assert page.index("Which choice for each loss") < page.index("<h2>Environment")
    assert summary.index("## Which choice for each loss") < summary.index("- Python")
    for loss in SMALL["losses"]:
        row = next(line for line in summary.splitlines()
                   if line.startswith(f"| [{report.markdown_text(loss)}](loss/{loss}.html) |"))
        for flag, bound, column in (("--max-ulp", "4", 1), ("--max-rel-error", "0.001", 2)):
            main(["recommend", "--loss", loss, flag, bound, "--db", str(store_path), "--json"])
            choice = json.loads(capsys.readouterr().out)["choice"]
            cell = row.split(" | ")[column]
            if choice is None:
                assert cell == "nothing measured qualifies"
            else:
                label = report.markdown_text(f"{choice['framework']}:{choice['impl']} {choice['dtype']}")
                assert cell.startswith(label), (loss, cell, label)


# --- legibility at the full grid size ---------------------------------------------

def _full_grid_rows() -> list[dict]:
    """Rows shaped like a full sweep's (every loss, framework, impl, mode, dtype, regime
    and size; errors drawn log-uniformly, some non-finite): a layout test, not a result."""
    rng = np.random.default_rng(0)
    rows = []
    built_in = {name: known.impls for name, known in adapters.FRAMEWORKS.items() if known.impls}
    for loss in registry.names():
        for framework, impls in built_in.items():
            for impl in impls:
                for mode in adapters.load(framework).modes:
                    for dtype in ("float16", "bfloat16", "float32", "float64"):
                        for regime in ("typical", "wide", "edge"):
                            for size in ((1000,) if mode == "compiled" else (10, 1000, 100_000, 10_000_000)):
                                ulp = float(10 ** rng.uniform(-1, 12))
                                timed = regime == "typical"
                                rows.append({
                                    "loss": loss, "params": "{}", "framework": framework, "framework_version": "1",
                                    "impl": impl, "dtype": dtype, "device": "cpu", "regime": regime, "size": size,
                                    "width": 10, "seed": 0, "mode": mode, "status": "ok", "result_dtype": dtype,
                                    "max_ulp": ulp, "reduced_ulp": ulp / 3, "max_rel": 1e-7,
                                    "unexpected_nonfinite": int(rng.random() < 0.05), "max_bits": 3.0,
                                    "forward_seconds": 1e-6 * size ** 0.9 * rng.uniform(1, 3) if timed else None,
                                    "elements_per_s": size / (1e-6 * size ** 0.9) if timed else None,
                                    "forward_bw_fraction": rng.uniform(0.01, 1) if timed else None,
                                    "forward_max_ulp": ulp / 10})
    return rows


def _overlapping_tick_labels(fig: Any) -> list[tuple[str, str]]:
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels if t.get_visible() and t.get_text()]
            for k, (text, box) in enumerate(boxes):
                found += [(text, other) for other, box2 in boxes[k + 1:] if box.overlaps(box2)]
    return found


def test_no_tick_labels_overlap_in_any_figure_at_the_full_grid_size(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every figure the report draws, from a full grid of 27 losses x 5 frameworks x
    impls x modes x 4 dtypes: matplotlib's text extents of the tick labels of each
    axis never intersect."""
    plt = report._pyplot()
    close, drawn = plt.close, []
    monkeypatch.setattr(plt, "close", drawn.append)  # keep each figure to measure it
    rows = _full_grid_rows()
    typical = [r for r in rows if r["regime"] == "typical"]
    report._heatmap(typical, tmp_path / "a.png", "typical", report.worst_ulp)
    report._heatmap(rows, tmp_path / "b.png", "all", report.worst_ulp)
    assert report._per_loss(typical, tmp_path / "c.png", "ULP error of the mean", lambda r: r["reduced_ulp"])
    assert report._pareto(typical, tmp_path / "e.png")
    report._modes_figure([(r, r) for r in typical[:500]], tmp_path / "f.png")
    assert len(drawn) == 5  # throughput and bandwidth fraction are drawn as the error against size is
    for number, fig in enumerate(drawn):
        overlaps = _overlapping_tick_labels(fig)
        close(fig)
        assert overlaps == [], (number, overlaps[:3])


def test_a_page_per_loss_linked_from_the_first_screen(store_path: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Each loss's page exists, is linked from index.html and summary.md, links back,
    every image it names exists, and its worst-cell command measures that cell again:
    the same inputs, the same worst ULP error."""
    out = tmp_path / "out"
    assert main(["report", "--db", str(store_path), "--out", str(out), "--asv-results", str(tmp_path / "no")]) == 0
    capsys.readouterr()
    index = (out / "index.html").read_text()
    for loss in SMALL["losses"]:
        page_path = out / "loss" / f"{loss}.html"
        assert f"href='loss/{loss}.html'" in index and f"](loss/{loss}.html)" in (out / "summary.md").read_text()
        page = _Images()
        text = page_path.read_text()
        page.feed(text)
        assert "href='../index.html'" in text and page.sources
        assert all((page_path.parent / source).is_file() for source in page.sources)
        command = text.split("<code>")[1].split("</code>")[0]
        argv = html.unescape(command).split()[1:]  # after "lossbench"
        assert main(argv) in (0, 1)
        record = json.loads(capsys.readouterr().out)
        with open_store(store_path) as store:
            worst = max((r for r in store.cells() if r["loss"] == loss and r["status"] == "ok"
                         and report.worst_ulp(r) is not None), key=report.worst_ulp)
        measured = [u for u in record["ulp_error"] if u is not None] if isinstance(record["ulp_error"], list) \
            else [record["ulp_error"]]
        assert max(measured) == pytest.approx(report.worst_ulp(worst), rel=1e-9)


# --- in a real browser ---------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOTS = os.environ.get("LOSSBENCH_SCREENSHOTS")  # a folder to keep the screenshots in


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="no chromium and chromedriver here: apt-get install chromium chromium-driver "
                           "(.ci/run does) to check the report in a real browser")
def test_report_in_headless_chromium(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """index.html and a loss page opened from disk in headless Chromium: every image
    loaded, nothing wider than the window, no console error; screenshots written."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    out = tmp_path / "out"
    assert main(["report", "--db", str(store_path), "--out", str(out), "--asv-results", str(tmp_path / "no")]) == 0
    capsys.readouterr()
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        for page, shot in ((out / "index.html", "index.png"), (out / "loss" / "cross_entropy.html", "loss.png")):
            driver.get(page.as_uri())
            broken = driver.execute_script(
                "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            driver.set_window_size(1280, max(900, driver.execute_script("return document.body.scrollHeight")))
            driver.save_screenshot(str(shots / shot))
            assert broken == [] and overflow <= 0 and errors == [], (page.name, broken, overflow, errors)
            driver.set_window_size(1280, 900)
            assert driver.execute_script("return document.images.length") > 0
    finally:
        driver.quit()
    assert all((shots / s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in ("index.png", "loss.png"))


class _Structure(HTMLParser):
    """Links, images and tables of a page: each table's first row must be a header."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.tables: list[list[str]] = []  # the tags of each table's first row
        self._row: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.targets.append(found["href"] or "")
        if tag == "img":
            self.targets.append(found.get("src") or "")
        if tag == "table":
            self.tables.append([])
            self._row = 0
        elif tag == "tr" and self._row is not None:
            self._row += 1
        elif tag in ("th", "td") and self._row == 1:
            self.tables[-1].append(tag)


def test_every_link_and_image_resolves_and_every_table_has_a_header(store_path: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", "--db", str(store_path), "--out", str(out), "--asv-results", str(tmp_path / "no")]) == 0
    capsys.readouterr()
    pages = [out / "index.html", *sorted((out / "loss").glob("*.html"))]
    assert len(pages) == 1 + len(SMALL["losses"])
    for page in pages:
        found = _Structure()
        found.feed(page.read_text())
        assert found.targets and found.tables, page.name
        for target in found.targets:
            assert "://" not in target, (page.name, target)  # opens from disk: nothing fetched
            assert (page.parent / target).is_file(), (page.name, target)
        for first_row in found.tables:
            assert first_row and set(first_row) == {"th"}, (page.name, first_row)
