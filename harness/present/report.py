"""The report: figures, index.html and summary.md, drawn only from the store.

Every part appears when its data exists (timed cells, gradient rows, the atlas,
asv results), so a store from an accuracy-only sweep still gives a report. The
HTML needs no server and no network: styles are inline and the figures are PNG
files beside it.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.running.benchgrid import ANCHORS, BenchCase
from harness.present.answers import LOOSE_REL, STRICT_ULP, Answer, answers
from harness.present.recommend import accuracy, choice_label
from harness.present.render import describe, format_cell
from harness.model import registry
from harness.model.spec import DTYPES
from harness.measure.environment import Environment
from harness.store import KEY_COLUMNS, Store

DEFAULT_OUT = Path("reports/latest")
# What drew each figure last time (a digest of its data and of this module): a rerun
# whose data did not change keeps the figure instead of drawing it again.
FIGURE_CACHE = "figures.json"
DEFAULT_ASV_RESULTS = Path(".asv/results")
REGIME = "typical"  # the regime of the size plots: what most inputs look like
CORRECTLY_ROUNDED = 0.5  # ulp; the colour scales start here
# Log scales end here: matplotlib's log ticks overflow from about 1e290 on, and errors beyond
# float64 are stored as inf. Larger values are drawn at the cap (the top colour).
LOG_CAP = 1e200


Row = dict[str, Any]


def choice(row: Row) -> str:
    return choice_label(row["framework"], row["impl"], row["dtype"], row["mode"])


def worst_ulp(row: Row) -> float | None:
    """A cell's accuracy as recommend judges it (per-element or reduced, the worse)."""
    return accuracy(row, "ulp")


def _pyplot() -> Any:
    """matplotlib on the file-only Agg backend, imported when a figure is drawn
    (importing it costs the CLI 0.4 s on every command)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Figure:
    file: str
    title: str
    how_to_read: str


@dataclass
class Report:
    """What was written, for the caller to print or test."""

    out: Path
    figures: list[Figure] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"


# --- figures ---------------------------------------------------------------------

def _heatmap(rows: Sequence[Row], path: Path, title: str, value: Callable[[Row], float | None]) -> None:
    """Loss x choice, worst value over the rows of each pair on a log colour scale
    (an error beyond float64, inf, takes the top colour); a red x marks unexpected
    non-finite results, grey an error, white nothing measured."""
    losses = sorted({r["loss"] for r in rows})
    choices = sorted({choice(r) for r in rows})
    worst: dict[tuple[str, str], float] = {}
    nonfinite: set[tuple[str, str]] = set()
    failed: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["loss"], choice(r))
        if r["status"] != "ok":
            failed.add(key)
            continue
        if r.get("unexpected_nonfinite"):
            nonfinite.add(key)
        v = value(r)
        if v is not None:
            worst[key] = max(worst.get(key, 0.0), v)
    grid = [[max(worst[(loss, c)], CORRECTLY_ROUNDED) if (loss, c) in worst else math.nan for c in choices]
            for loss in losses]
    top = min(max([v for row in grid for v in row if math.isfinite(v)] + [10.0]), LOG_CAP)
    grid = [[min(v, top) for v in row] for row in grid]
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(max(8.0, 0.42 * len(choices) + 3), max(4.0, 0.32 * len(losses) + 2)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", norm=LogNorm(vmin=CORRECTLY_ROUNDED, vmax=top),
                      interpolation="nearest")
    for i, loss in enumerate(losses):
        for j, c in enumerate(choices):
            if (loss, c) in failed and (loss, c) not in worst:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.6"))
            if (loss, c) in nonfinite:
                ax.plot(j, i, marker="x", color="red", markersize=7, markeredgewidth=2)
    ax.set_xticks(range(len(choices)), choices, rotation=90, fontsize=7)
    ax.set_yticks(range(len(losses)), losses, fontsize=7)
    fig.colorbar(image, ax=ax, label="max ULP error (log; 0.5 = correctly rounded)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _panels(losses: Sequence[str], path: Path, xlabel: str, ylabel: str,
            draw: Callable[[Any, str], None]) -> None:
    """One log-log panel per loss, four to a row, drawn by ``draw(axes, loss)``."""
    columns = min(4, len(losses))
    count = math.ceil(len(losses) / columns)
    plt = _pyplot()
    fig, axes = plt.subplots(count, columns, figsize=(4.2 * columns, 3.1 * count), squeeze=False)
    for ax, loss in zip(axes.flat, losses):
        draw(ax, loss)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(losses):]:
        ax.axis("off")
    fig.supxlabel(xlabel)
    fig.supylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


_DTYPE_COLOURS = {dtype: f"C{k}" for k, dtype in enumerate(DTYPES)}  # matplotlib's colour cycle
_STYLES = ("-", "--", ":", "-.")


def _per_loss(rows: Sequence[Row], path: Path, ylabel: str, line: Callable[[Row], float | None]) -> bool:
    """One panel per loss, one line per choice against size (colour = dtype); False
    if nothing positive and finite to draw on a log scale."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = line(r)
        if v is not None and v > 0 and math.isfinite(v):
            series[r["loss"]][choice(r)].append((r["size"], min(v, LOG_CAP)))
    if not series:
        return False

    def draw(ax: Any, loss: str) -> None:
        implementations = sorted({c.split()[0] for c in series[loss]})
        for c, points in sorted(series[loss].items()):
            impl, dtype = c.split()[:2]  # a compiled choice's label ends in "(compiled)"
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], _STYLES[implementations.index(impl) % 4],
                    color=_DTYPE_COLOURS.get(dtype, "black"), marker=".", label=c, linewidth=1)
        ax.set_title(loss, fontsize=9)
        ax.legend(fontsize=5, ncol=2)

    _panels(sorted(series), path, "input elements", ylabel, draw)
    return True


def _pareto(rows: Sequence[Row], path: Path) -> bool:
    """Per loss, at its largest timed size: forward time against worst ULP error; the
    choices no other beats on both are joined (the Pareto front)."""
    by_loss: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        error = worst_ulp(r)
        if r.get("forward_seconds") and error is not None and math.isfinite(error):
            by_loss[r["loss"]].append(r)
    if not by_loss:
        return False

    def draw(ax: Any, loss: str) -> None:
        largest = max(r["size"] for r in by_loss[loss])
        points = sorted((r["forward_seconds"], min(max(worst_ulp(r) or 0.0, CORRECTLY_ROUNDED), LOG_CAP), choice(r))
                        for r in by_loss[loss] if r["size"] == largest)
        front = pareto_front([(t, u) for t, u, _ in points])
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=12, color="0.5")
        ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="tab:red", markersize=4)
        for t, u, label in points:
            if (t, u) in front:
                ax.annotate(label, (t, u), fontsize=5, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{loss} ({largest:g} elements)", fontsize=9)

    _panels(sorted(by_loss), path, "forward seconds per call (median)", "worst ULP error", draw)
    return True


def mode_pairs(cells: Sequence[Row]) -> list[tuple[Row, Row]]:
    """(eager, compiled) rows of the same cell, both ok and measured."""
    def key(r: Row) -> tuple[Any, ...]:
        return tuple(r[c] for c in KEY_COLUMNS if c != "mode")
    eager = {key(r): r for r in cells if r["mode"] == "eager" and r["status"] == "ok" and worst_ulp(r) is not None}
    return [(eager[key(r)], r) for r in cells
            if r["mode"] == "compiled" and r["status"] == "ok" and worst_ulp(r) is not None and key(r) in eager]


def _modes_figure(pairs: Sequence[tuple[Row, Row]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    low = CORRECTLY_ROUNDED / 10
    x = [max(worst_ulp(e) or 0.0, low) for e, _ in pairs]
    y = [max(worst_ulp(c) or 0.0, low) for _, c in pairs]
    finite = [v for v in x + y if math.isfinite(v)]
    top = min(max(finite, default=1.0) * 10, LOG_CAP)
    ax.scatter([min(v, top) for v in x], [min(v, top) for v in y], s=8, color="tab:blue", alpha=0.6)
    ax.plot([low, top], [low, top], color="0.5", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, top)
    ax.set_ylim(low, top)
    ax.set_xlabel("worst ULP error, eager")
    ax.set_ylabel("worst ULP error, compiled")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (time, error) points no other point beats on both, fastest first."""
    front: list[tuple[float, float]] = []
    for t, e in sorted(points):
        if not front or e < front[-1][1]:
            front.append((t, e))
    return front


def asv_history(results: Path) -> dict[str, list[tuple[float, float]]]:
    """time_forward medians of the anchor cases (benchgrid.ANCHORS, run in every asv
    subset) over asv result files: case -> [(commit date, seconds)]."""
    anchors = {BenchCase(*anchor).id for anchor in ANCHORS}
    history: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for path in sorted(results.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        try:
            data = json.loads(path.read_text())
            entry = data["results"]["losses.Forward.time_forward"]
            columns = data["result_columns"]
            values, (cases,) = entry[columns.index("result")], entry[columns.index("params")]
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):
            continue  # not a lossbench asv result
        for case, value in zip(cases, values):
            if case.strip("'") in anchors and value is not None and math.isfinite(value):
                history[case.strip("'")].append((data["date"] / 1000, value))
    return dict(history)


def _history_figure(history: dict[str, list[tuple[float, float]]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for case, points in sorted(history.items()):
        points.sort()
        dates = [datetime.fromtimestamp(p[0], timezone.utc) for p in points]
        ax.plot(dates, [p[1] for p in points], "-o", markersize=3, label=case, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("commit date (UTC)")
    ax.set_ylabel("forward seconds per call (asv)")
    ax.legend(fontsize=6)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- the report ----------------------------------------------------------------------

def _written(out: Path, file: str, write: Callable[[Path], Any]) -> Any:
    """``write`` a temporary file in ``out``, then os.replace it onto ``out/file``
    (unless write returns False): a symlink planted at that name is replaced,
    never followed, and no reader sees half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=out, prefix=f".{file}.", suffix=Path(file).suffix)
    os.close(descriptor)
    try:
        result = write(Path(temporary))
        if result is not False:
            os.replace(temporary, out / file)
        return result
    finally:
        Path(temporary).unlink(missing_ok=True)


def build(store: Store, out: Path = DEFAULT_OUT, asv_results: Path = DEFAULT_ASV_RESULTS) -> Report:
    """Write the figures, index.html and summary.md into ``out``, each file
    through a temporary one (_written)."""
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    cells = list(store.cells())
    gradients = list(store.gradients())
    typical = [r for r in cells if r["regime"] == REGIME and r["status"] == "ok"]

    cache = out / FIGURE_CACHE
    drawn_before = json.loads(cache.read_text()) if cache.exists() else {}
    drawn_now: dict[str, dict[str, Any]] = {}
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()

    def figure(file: str, title: str, how_to_read: str, data: Any, draw: Callable[[Path], bool | None]) -> None:
        """Draw ``file`` from ``data``, unless the same data and code drew it last time."""
        digest = hashlib.sha256(json.dumps([code, data], sort_keys=True, default=str).encode()).hexdigest()
        before = drawn_before.get(file)
        if before and before["digest"] == digest and (not before["drawn"] or (out / file).exists()):
            drawn = before["drawn"]
        else:
            drawn = _written(out, file, draw) is not False
        drawn_now[file] = {"digest": digest, "drawn": drawn}
        if drawn:
            report.figures.append(Figure(file, title, how_to_read))

    if cells:
        typical_cells = [r for r in cells if r["regime"] == REGIME]
        figure("accuracy_typical.png", "Accuracy on typical inputs",
               "Each square is the worst ULP error of a loss in one framework, impl and dtype over every size "
               "on typical inputs (dark is accurate, 0.5 ulp means correctly rounded); a red x marks unexpected "
               "non-finite results, grey a cell that failed.", typical_cells,
               lambda p: _heatmap(typical_cells, p, "typical inputs", worst_ulp))
        figure("accuracy_all_regimes.png", "Accuracy over every regime",
               "The same squares over every input regime (wide, saturated, near overflow, cancellation, edge): "
               "where a choice breaks, not how it usually does.", cells,
               lambda p: _heatmap(cells, p, "all regimes (worst)", worst_ulp))
        figure("error_vs_size.png", "Error of the mean against size",
               "One panel per loss, one line per framework:impl and dtype (colour = dtype): the ULP error of "
               "the mean on typical inputs; a line rising with size is reduction error accumulating.", typical,
               lambda p: _per_loss(typical, p, "ULP error of the mean", lambda r: r["reduced_ulp"]))
    timed = [r for r in typical if r.get("forward_seconds")]
    if timed:
        figure("throughput_vs_size.png", "Throughput against size",
               "Elements per second of the forward loss (median of calibrated samples) on typical inputs; "
               "higher is faster.", timed, lambda p: _per_loss(timed, p, "elements / s", lambda r: r["elements_per_s"]))
        figure("bandwidth_fraction_vs_size.png", "Fraction of the measured memory bandwidth",
               "Minimum bytes moved per second divided by the machine's measured STREAM limit: near 1 the "
               "loss runs as fast as memory allows; far below, it is compute or overhead bound.", timed,
               lambda p: _per_loss(timed, p, "fraction of bandwidth limit", lambda r: r["forward_bw_fraction"]))
        figure("accuracy_vs_speed.png", "Accuracy against speed",
               "Each point is a choice at the loss's largest timed size; the red line joins the choices no other "
               "beats on both time and error (the Pareto front): pick from it.", timed, lambda p: _pareto(timed, p))
    if gradients:
        typical_gradients = [g for g in gradients if g["regime"] == REGIME and g["status"] != "no_gradient"]
        figure("gradient_accuracy.png", "Gradient accuracy on typical inputs",
               "As the accuracy squares, for d(loss)/d(input) against the reference derivative; a square much "
               "brighter than its forward square is a loss accurate forward and wrong backward.", typical_gradients,
               lambda p: _heatmap(typical_gradients, p, "gradient, typical inputs", lambda g: g["max_ulp"]))
    pairs = mode_pairs(cells)
    if pairs:
        figure("compiled_vs_eager.png", "Compiled against eager",
               "Each point is a cell measured both ways (same loss, framework, impl, dtype, regime and size): its "
               "worst ULP error eager (across) and compiled (up). Above the grey diagonal compiling lost accuracy, "
               "below it gained; the largest differences are listed below.", [[e, c] for e, c in pairs],
               lambda p: _modes_figure(pairs, p))
    history = asv_history(asv_results) if asv_results.is_dir() else {}
    if history:
        figure("asv_history.png", "Speed history (asv)",
               "Forward time of the asv anchor cases (mse and cross_entropy, torch float32) per commit in "
               ".asv/results: a step up is a speed regression.", history,
               lambda p: _history_figure(history, p))
    _written(out, FIGURE_CACHE, lambda p: p.write_text(json.dumps(drawn_now)))
    atlas = store.atlas()
    context = _context(store, cells, gradients)
    context["answers"] = answers(registry.names(), cells, gradients, atlas)
    index = _html(report, context, atlas)
    _written(out, "index.html", lambda p: p.write_text(index))
    _written(out, "summary.md", lambda p: p.write_text(_markdown(report, context)))
    return report


def _context(store: Store, cells: list[Row], gradients: list[Row]) -> dict[str, Any]:
    runs = store.runs()
    last = runs[-1] if runs else None
    ok = [r for r in cells if r["status"] == "ok"]
    worst = sorted(_at_worst_size((r for r in ok if worst_ulp(r) is not None), worst_ulp),
                   key=lambda r: -(worst_ulp(r) or 0))[:15]

    def backward_ratio(g: Row) -> float:
        return g["max_ulp"] / max(g["forward_max_ulp"], 1.0)

    worse_backward = sorted(_at_worst_size(
        (g for g in gradients if g["status"] == "ok" and g["max_ulp"] is not None and g["forward_max_ulp"] is not None
         and g["max_ulp"] > WORSE_BACKWARD * max(g["forward_max_ulp"], 1.0)), backward_ratio),
        key=lambda g: -backward_ratio(g))[:15]
    return {
        "environment": last.environment if last else Environment({}),
        "config": last.config if last else {},
        "runs": len(runs),
        "cells": len(cells),
        "statuses": dict(sorted(Counter(r["status"] for r in cells).items())),
        "gradients": len(gradients),
        "worst": worst,
        "worse_backward": worse_backward,
        "mode_differences": sorted(
            ({**c, "eager_ulp": worst_ulp(e), "compiled_ulp": worst_ulp(c)} for e, c in mode_pairs(cells)
             if worst_ulp(e) != worst_ulp(c)),
            key=lambda r: -abs(math.log(max(r["compiled_ulp"], 1e-3) / max(r["eager_ulp"], 1e-3))))[:15],
        "bandwidth": _latest_bandwidth(store),
    }


def _at_worst_size(rows: Iterable[Row], badness: Callable[[Row], Any]) -> list[Row]:
    """One row per cell apart from its size (loss, framework, impl, dtype, mode,
    regime, device): the one at its worst size, with ``sizes`` saying how many
    sizes it stands for, so one problem is listed once."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        groups.setdefault(tuple(r[c] for c in _CELL_APART_FROM_SIZE), []).append(r)
    return [{**max(g, key=badness), "sizes": len(g)} for g in groups.values()]


_CELL_APART_FROM_SIZE = ("loss", "params", "framework", "impl", "dtype", "device", "mode", "regime", "width", "seed")


def _latest_bandwidth(store: Store) -> list[Row]:
    """The STREAM results of the latest run that measured them (a later untimed run measures none)."""
    rows = store.bandwidth()
    latest = max((r["run_id"] for r in rows), default=None)
    return [r for r in rows if r["run_id"] == latest]


WORST_NOTE = ("One row per cell at its worst size (sizes: how many sizes of that cell are stored); "
              "worst of max_ulp and reduced_ulp first. max_bits: bits of error, log2(1 + floats of the dtype "
              "between result and correctly rounded reference), 0 to the dtype's width; empty for rows stored "
              "before schema 8.")
# A gradient is listed as far worse than its forward value past this ratio of max ulps.
WORSE_BACKWARD = 100
WORST_COLUMNS = ("loss", "framework", "impl", "dtype", "mode", "regime", "size", "sizes", "max_ulp", "max_bits",
                 "reduced_ulp", "max_rel", "unexpected_nonfinite")
MODE_COLUMNS = ("loss", "framework", "impl", "dtype", "regime", "size", "eager_ulp", "compiled_ulp")
WORSE_BACKWARD_COLUMNS = ("loss", "framework", "impl", "dtype", "mode", "regime", "size", "sizes", "max_ulp",
                          "forward_max_ulp")


def _html_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _environment_lines(context: dict[str, Any]) -> list[str]:
    env, config = context["environment"], context["config"]
    lines = env.lines()
    if config:
        lines.append("last run: " + ", ".join(f"{k}={v}" for k, v in config.items()
                                         if k in ("dtypes", "devices", "sizes", "widths", "seeds", "time", "grad")))
    for device in sorted({b["device"] for b in context["bandwidth"]}):
        best = max((b for b in context["bandwidth"] if b["device"] == device), key=lambda b: b["gbps"])
        lines.append(f"memory bandwidth limit ({device}): {best['gbps']:.1f} GB/s, STREAM {best['kernel']} "
                     f"in {best['framework']}")
    lines.append(f"{context['cells']} cells ({', '.join(f'{n} {s}' for s, n in context['statuses'].items())}), "
                 f"{context['gradients']} gradient rows, {context['runs']} runs")
    return lines


def _html(report: Report, context: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>lossbench report</title>",
             "<style>body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}</style></head><body><h1>lossbench report</h1>",
             *_html_answers(context["answers"]),
             "<h2>Environment</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in _environment_lines(context))
             + "</ul>"]
    for f in report.figures:
        parts.append(f"<h2>{html.escape(f.title)}</h2><p>{html.escape(f.how_to_read)}</p>"
                     f"<img src='{html.escape(f.file)}' alt='{html.escape(f.title)}'>")
    if context["worst"]:
        parts.append("<h2>Least accurate cells</h2><p>" + html.escape(WORST_NOTE) + "</p>"
                     + _html_table(context["worst"], WORST_COLUMNS))
    if context["mode_differences"]:
        parts.append("<h2>Largest compiled-against-eager accuracy differences</h2>"
                     + _html_table(context["mode_differences"], MODE_COLUMNS))
    if context["worse_backward"]:
        parts.append(f"<h2>Gradients far worse than the forward value (over {WORSE_BACKWARD}x the forward max "
                     "ulp)</h2>" + _html_table(context["worse_backward"], WORSE_BACKWARD_COLUMNS))
    if entries:
        parts.append("<h2>Conventions atlas</h2><p>How each framework computes each loss, found by running it "
                     "(lossbench atlas); open an entry for its calls, dtypes, mean and edge inputs.</p>")
        for entry in entries:
            head, *body = describe(entry)
            parts.append(f"<details><summary>{html.escape(head)}</summary><pre>{html.escape(chr(10).join(body))}"
                         "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


_MARKDOWN_ACTIVE = re.compile(r"([\\`*_{}\[\]<>()#!|~&])")


def markdown_text(text: str) -> str:
    """Text from the store as literal Markdown inside a list item or table cell:
    every character Markdown (or the HTML inside it) could act on there is
    escaped, and a line break cannot start a block. (., - and + act only at the
    start of a line, which such text never is.)"""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", " ".join(str(text).splitlines()))


ANSWERS_NOTE = (f"Per loss, the fastest choice (framework:impl dtype) whose worst error on typical inputs is within "
                f"{STRICT_ULP:g} ulp of its own dtype, and the fastest within a relative error of {LOOSE_REL:g}, as "
                "lossbench recommend finds them at the largest timed size; then the one warning about the first "
                "that matters most.")


def _html_answers(rows: Sequence[Answer]) -> list[str]:
    if not rows:
        return []
    head = "".join(f"<th>{html.escape(t)}</th>" for t in Answer.TITLES)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(getattr(a, c)))}</td>" for c in Answer.COLUMNS) + "</tr>"
                   for a in rows)
    return [f"<h2>Which choice for each loss</h2><p>{html.escape(ANSWERS_NOTE)}</p>"
            f"<table><tr>{head}</tr>{body}</table>"]


def _markdown(report: Report, context: dict[str, Any]) -> str:
    lines = ["# lossbench report", ""]
    if context["answers"]:
        lines += ["## Which choice for each loss", "", ANSWERS_NOTE, "", "| " + " | ".join(Answer.TITLES) + " |",
                  "|" + "---|" * len(Answer.TITLES)]
        lines += ["| " + " | ".join(markdown_text(getattr(a, c)) for c in Answer.COLUMNS) + " |"
                  for a in context["answers"]] + [""]
    lines += [*(f"- {markdown_text(x)}" for x in _environment_lines(context)), ""]
    for f in report.figures:
        lines += [f"## {f.title}", "", f.how_to_read, "", f"![{f.title}]({f.file})", ""]
    if context["worst"]:
        lines += ["## Least accurate cells", "", WORST_NOTE, "", "| " + " | ".join(WORST_COLUMNS) + " |",
                  "|" + "---|" * len(WORST_COLUMNS)]
        lines += ["| " + " | ".join(markdown_text(format_cell(r.get(c))) for c in WORST_COLUMNS) + " |"
                  for r in context["worst"]]
    return "\n".join(lines) + "\n"
