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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from operator import itemgetter
from pathlib import Path
from typing import Any

from harness.running.benchgrid import ANCHORS, BenchCase
from harness.present.answers import LOOSE_REL, STRICT_ULP, Answer, answers
from harness.present.compare import MATCHED_ON, Comparison
from harness.present.pages import loss_page
from harness.present.scales import (
    BAND_COLOURS, BANDS, DTYPE_MARKERS, FRAMEWORK_COLOURS, WORSE_BACKWARD, backward_ratio, band, choice,
    far_worse_backward, worst_ulp,
)
from harness.present.render import describe, format_cell
from harness.model import registry
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


def _pyplot() -> Any:
    """matplotlib on the file-only Agg backend, imported when a figure is drawn
    (importing it costs the CLI 0.4 s on every command)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: sharp and small
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
    pages: list[str] = field(default_factory=list)  # the loss pages, relative to out
    sections: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"


# --- figures ---------------------------------------------------------------------

def _short(value: float) -> str:
    """A number that fits a square: 0.5, 3.2, 41, 2e+07, inf."""
    if not math.isfinite(value):
        return "inf"
    return f"{value:.2g}" if value < 100 else f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def _heatmap(rows: Sequence[Row], path: Path, title: str, value: Callable[[Row], float | None]) -> None:
    """Loss x choice: the worst value over the rows of each pair, coloured by its
    accuracy band in the choice's dtype, with the number printed in the square. A
    red triangle in the corner marks unexpected non-finite results (beside the
    number, not over it), grey a cell that failed, white nothing measured."""
    losses = sorted({r["loss"] for r in rows})
    choices = sorted({choice(r) for r in rows})
    dtype_of = {choice(r): r["dtype"] for r in rows}
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
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    grid = [[band(worst[(loss, c)], dtype_of[c]) if (loss, c) in worst else math.nan for c in choices]
            for loss in losses]
    width, height = max(8.0, 0.36 * len(choices) + 4), max(4.0, 0.26 * len(losses) + 2.5)
    fig, ax = plt.subplots(figsize=(width, height))
    ax.imshow(grid, aspect="auto", cmap=ListedColormap(BAND_COLOURS), vmin=-0.5, vmax=len(BANDS) - 0.5,
              interpolation="nearest")
    for i, loss in enumerate(losses):
        for j, c in enumerate(choices):
            key = (loss, c)
            if key in failed and key not in worst:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.6"))
            if key in worst:
                ax.text(j, i, _short(worst[key]), ha="center", va="center", fontsize=4.5)
            if key in nonfinite:
                ax.plot(j + 0.32, i - 0.3, marker=">", color="red", markersize=3)
    ax.set_xticks(range(len(choices)), choices, rotation=90, fontsize=6)
    ax.set_yticks(range(len(losses)), losses, fontsize=6)
    legend = [Patch(color=colour, label=name) for colour, name in zip(BAND_COLOURS, BANDS)]
    legend += [Patch(color="0.6", label="failed"),
               plt.Line2D([], [], marker=">", color="red", linestyle="", label="unexpected non-finite results")]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
              title="worst ULP error (number in the square)", title_fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


LOG_LOG = {"xscale": "log", "yscale": "log"}  # subplot_kw of the panels _log_axes finishes


def _log_axes(ax: Any) -> None:
    """Log-log axes whose tick labels cannot collide: at most five labelled ticks at
    powers of ten, or three on an axis spanning under a decade and a half; no
    minor ticks (in panels this small they are clutter, and each is an object
    matplotlib builds on every draw). For axes made log-log (LOG_LOG): setting a
    scale afterwards resets the locators, and on panels sharing x rescales them all.
    Call it once the data is drawn."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if high < 30 * low:  # under a decade and a half: three ticks, evenly spaced on the log scale
            ticks = sorted({float(f"{low * (high / low) ** k:.2g}") for k in (0.15, 0.5, 0.85)})
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        else:
            axis.set_major_locator(LogLocator(base=10, numticks=5))
        axis.set_minor_locator(NullLocator())
    ax.tick_params(labelsize=6)


def _shared_legend(plt: Any, frameworks: Iterable[str]) -> list[Any]:
    """Legend entries for the colours (frameworks) and markers (dtypes) every figure shares."""
    return [plt.Line2D([], [], color=FRAMEWORK_COLOURS.get(f, "black"), marker="o", linestyle="", label=f)
            for f in frameworks] + \
        [plt.Line2D([], [], color="0.3", marker=m, linestyle="", label=d) for d, m in DTYPE_MARKERS.items()]


def _panels(losses: Sequence[str], path: Path, xlabel: str, ylabel: str,
            draw: Callable[[Any, str], None], frameworks: Sequence[str] = ()) -> None:
    """One log-log panel per loss, four to a row, drawn by ``draw(axes, loss)``; with
    ``frameworks``, the shared colour and marker legend outside the panels."""
    columns = min(4, len(losses))
    count = math.ceil(len(losses) / columns)
    plt = _pyplot()
    fig, axes = plt.subplots(count, columns, figsize=(4.2 * columns, 3.1 * count), squeeze=False, subplot_kw=LOG_LOG)
    for ax, loss in zip(axes.flat, losses):
        draw(ax, loss)
        _log_axes(ax)
    for ax in list(axes.flat)[len(losses):]:
        ax.axis("off")
    fig.supxlabel(xlabel)
    fig.supylabel(ylabel)
    if frameworks:
        fig.legend(handles=_shared_legend(plt, frameworks), loc="upper right", fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0, 1 - 1.3 / (4.2 * columns), 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


_STYLES = ("-", "--", ":", "-.")


Series = dict[tuple[str, str], dict[tuple[str, str], list[tuple[int, float]]]]  # (row, framework) -> lines


def _series(rows: Iterable[Row], facet: Callable[[Row], str], line: Callable[[Row], float | None],
            into: Series | None = None) -> Series:
    """Eager cells' values against size, by (facet(row), framework) and (impl, dtype);
    only positive finite values (log scales). Compiled cells are measured at one size."""
    series: Series = into if into is not None else defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = line(r)
        if r["mode"] == "eager" and v is not None and v > 0 and math.isfinite(v):
            series[(facet(r), r["framework"])][(r["impl"], r["dtype"])].append((r["size"], min(v, LOG_CAP)))
    return series


def _per_loss(rows: Sequence[Row], path: Path, ylabel: str, line: Callable[[Row], float | None]) -> bool:
    """Small multiples against size, a row of panels per loss (see _small_multiples);
    False if nothing positive and finite to draw."""
    series = _series(rows, lambda r: r["loss"], line)
    if not series:
        return False
    _small_multiples(series, path, ylabel)
    return True


def _small_multiples(series: Series, path: Path, ylabel: str) -> None:
    """A row of panels per facet, a column per framework (its colour); in a panel one
    line per impl (line style) and dtype (marker), at most eight; one legend, outside
    the panels."""
    facets = list(dict.fromkeys(facet for facet, _ in series))
    frameworks = [f for f in FRAMEWORK_COLOURS if any(f == g for _, g in series)] + \
        sorted({f for _, f in series} - set(FRAMEWORK_COLOURS))
    impls = {f: sorted({i for (_, g), lines in series.items() if g == f for i, _ in lines}) for f in frameworks}
    plt = _pyplot()
    width, height = 2.6 * len(frameworks) + 1.6, 1.7 * len(facets) + 1
    fig, axes = plt.subplots(len(facets), len(frameworks), figsize=(width, height), squeeze=False, sharex=True,
                             subplot_kw=LOG_LOG)
    for i, facet in enumerate(facets):
        for j, framework in enumerate(frameworks):
            ax = axes[i][j]
            lines = series.get((facet, framework))
            if not lines:
                ax.axis("off")
                continue
            for (impl, dtype), points in sorted(lines.items()):
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], _STYLES[impls[framework].index(impl) % 4],
                        color=FRAMEWORK_COLOURS.get(framework, "black"), marker=DTYPE_MARKERS.get(dtype, "."),
                        markersize=3, linewidth=0.8)
            if j == 0 or not axes[i][j - 1].has_data():
                ax.set_ylabel(facet, fontsize=7)
            if i == 0:
                ax.set_title(framework + "\n" + ", ".join(f"{_STYLES[k % 4]} {impl}"
                                                          for k, impl in enumerate(impls[framework])), fontsize=7)
    # Once every panel is drawn: the shared x limits are then found once, not again after each panel.
    for ax in axes.flat:
        if ax.has_data():
            _log_axes(ax)
    fig.legend(handles=_shared_legend(plt, ()), loc="upper right", fontsize=7, title="dtype", title_fontsize=7,
               frameon=False)
    fig.supxlabel("input elements", y=0.1 / height)  # in inches too: the default is a share of a tall figure
    fig.supylabel(ylabel)
    # Margins in inches, not tight_layout: measuring every label of a hundred panels
    # took most of a cold report's time. Left: the label, a facet's name and tick
    # labels; right: the legend; top: the titles; between panels: tick labels.
    panel_width = (width - 1.0 - 1.4) / len(frameworks)
    panel_height = (height - 0.6 - 0.75) / len(facets)
    fig.subplots_adjust(left=1.0 / width, right=1 - 1.4 / width, bottom=0.75 / height, top=1 - 0.6 / height,
                        wspace=0.55 / (panel_width - 0.55), hspace=0.25 / (panel_height - 0.25))
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _loss_figure(rows: Sequence[Row], path: Path) -> bool:
    """One loss against size: a row of panels for the ULP error of its reduction, its
    elements per second and its fraction of the bandwidth limit, a column per framework."""
    series: Series | None = None
    for label, line in (("ULP error of the reduction", lambda r: r["reduced_ulp"]),
                        ("elements / s", lambda r: r["elements_per_s"]),
                        ("fraction of bandwidth", lambda r: r["forward_bw_fraction"])):
        series = _series(rows, lambda r, label=label: label, line, series)
    if not series:
        return False
    _small_multiples(series, path, "typical inputs")
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
        for r in by_loss[loss]:
            if r["size"] == largest:
                ax.scatter(r["forward_seconds"], min(max(worst_ulp(r) or 0.0, CORRECTLY_ROUNDED), LOG_CAP), s=14,
                           color=FRAMEWORK_COLOURS.get(r["framework"], "0.5"), marker=DTYPE_MARKERS.get(r["dtype"], "."))
        ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="tab:red", markersize=4)
        for t, u, label in points:
            if (t, u) in front:
                ax.annotate(label, (t, u), fontsize=5, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{loss} ({largest:g} elements)", fontsize=9)

    _panels(sorted(by_loss), path, "forward seconds per call (median)", "worst ULP error", draw,
            sorted({r["framework"] for rows_ in by_loss.values() for r in rows_}))
    return True


def pairs(cells: Sequence[Row], column: str, sides: tuple[str, str],
          apart: tuple[str, ...] = ()) -> list[tuple[Row, Row]]:
    """Rows of the same cell on the two ``sides`` of ``column`` (also apart in the
    ``apart`` columns), both ok and measured: (first side's, second side's)."""
    def key(r: Row) -> tuple[Any, ...]:
        return tuple(r[c] for c in KEY_COLUMNS if c != column and c not in apart)
    first = {key(r): r for r in cells if r[column] == sides[0] and r["status"] == "ok" and worst_ulp(r) is not None}
    return [(first[key(r)], r) for r in cells
            if r[column] == sides[1] and r["status"] == "ok" and worst_ulp(r) is not None and key(r) in first]


def mode_pairs(cells: Sequence[Row]) -> list[tuple[Row, Row]]:
    """(eager, compiled) rows of the same cell."""
    return pairs(cells, "mode", ("eager", "compiled"))


def device_pairs(cells: Sequence[Row]) -> list[tuple[Row, Row]]:
    """(cpu, cuda) rows of the same cell, whatever the framework version on each
    machine (a device run's store merged beside this machine's)."""
    return pairs(cells, "device", ("cpu", "cuda"), apart=("framework_version",))


def _by_difference(found: Iterable[tuple[Row, Row]], names: tuple[str, str]) -> list[Row]:
    """The second rows of differing pairs, with both worst errors, largest ratio first."""
    rows = [{**b, names[0]: worst_ulp(a), names[1]: worst_ulp(b)} for a, b in found if worst_ulp(a) != worst_ulp(b)]
    return sorted(rows, key=lambda r: -abs(math.log(max(r[names[1]], 1e-3) / max(r[names[0]], 1e-3))))[:15]


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
    target = out / file  # ``file`` may name a subfolder (loss/<name>.html)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(descriptor)
    try:
        result = write(Path(temporary))
        if result is not False:
            os.replace(temporary, target)
        return result
    finally:
        Path(temporary).unlink(missing_ok=True)


@dataclass(frozen=True)
class Drawing:
    """A figure to draw: ``function(data, path, **options)``, all picklable, so that
    worker processes can draw it."""

    file: str
    function: Callable[..., bool | None]
    data: Any
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, out: Path) -> bool:
        """Draw into ``out``; whether the figure exists (False: nothing to draw)."""
        return _written(out, self.file, lambda path: self.function(self.data, path, **self.options)) is not False


def _draw_all(drawings: Sequence[Drawing], out: Path, jobs: int) -> list[bool]:
    """Each drawing drawn, by ``jobs`` spawned processes where there are several (the
    figures are independent, and matplotlib takes one core each)."""
    if jobs < 2 or len(drawings) < 2:
        return [drawing(out) for drawing in drawings]
    # Largest data first, so that no big figure starts last.
    order = sorted(range(len(drawings)), key=lambda i: -len(drawings[i].data))
    with ProcessPoolExecutor(min(jobs, len(drawings)), mp_context=get_context("spawn")) as pool:
        drawn = dict(zip(order, pool.map(_draw_in_worker, [(drawings[i], out) for i in order])))
    return [drawn[i] for i in range(len(drawings))]


def _draw_in_worker(job: tuple[Drawing, Path]) -> bool:
    drawing, out = job
    return drawing(out)


def build(store: Store, out: Path = DEFAULT_OUT, asv_results: Path = DEFAULT_ASV_RESULTS,
          changes: Comparison | None = None, jobs: int = 1) -> Report:
    """Write the figures, index.html and summary.md into ``out``, each file
    through a temporary one (_written); with ``changes``, a section of them;
    figures drawn by ``jobs`` processes."""
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    cells = list(store.cells())
    gradients = list(store.gradients())
    typical = [r for r in cells if r["regime"] == REGIME and r["status"] == "ok"]

    cache = out / FIGURE_CACHE
    drawn_before = json.loads(cache.read_text()) if cache.exists() else {}
    drawn_now: dict[str, dict[str, Any]] = {}
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    listed: list[Figure] = []
    to_draw: list[Drawing] = []

    def figure(drawing: Drawing, title: str = "", how_to_read: str = "", shown: bool = True) -> None:
        """Draw ``drawing``, unless the same data and code drew it last time. ``shown``:
        listed on the overview page, where it exists."""
        # The options are this module's constants: its code's digest covers them.
        digest = hashlib.sha256(json.dumps([code, drawing.data], sort_keys=True, default=str).encode()).hexdigest()
        before = drawn_before.get(drawing.file)
        if before and before["digest"] == digest and (not before["drawn"] or (out / drawing.file).exists()):
            drawn_now[drawing.file] = {"digest": digest, "drawn": before["drawn"]}
        else:
            drawn_now[drawing.file] = {"digest": digest, "drawn": None}
            to_draw.append(drawing)
        if shown:
            listed.append(Figure(drawing.file, title, how_to_read))

    if cells:
        typical_cells = [r for r in cells if r["regime"] == REGIME]
        figure(Drawing("accuracy_typical.svg", _heatmap, typical_cells, {"title": "typical inputs", "value": worst_ulp}),
               "Accuracy on typical inputs",
               "Each square is the worst ULP error of a loss in one framework, impl and dtype over every size "
               "on typical inputs, printed in the square; the colour is its band in that dtype (green: correctly "
               "rounded, <= 0.5 ulp; light green: faithful, <= 1; yellow: <= 4; orange: <= 2^(p/2), half the "
               "digits; red: beyond). A red triangle beside the number marks unexpected non-finite results, grey "
               "a cell that failed.")
        figure(Drawing("accuracy_all_regimes.svg", _heatmap, cells, {"title": "all regimes (worst)", "value": worst_ulp}),
               "Accuracy over every regime",
               "The same squares over every input regime (wide, saturated, near overflow, cancellation, edge): "
               "where a choice breaks, not how it usually does.")
        figure(Drawing("error_vs_size.png", _per_loss, typical,
                       {"ylabel": "ULP error of the mean", "line": itemgetter("reduced_ulp")}),
               "Error of the mean against size",
               "A row of panels per loss, a column per framework (its colour), a line per impl (line style) and "
               "dtype (marker): the ULP error of the mean on typical inputs of eager cells; a line rising with size "
               "is reduction error accumulating.")
    timed = [r for r in typical if r.get("forward_seconds")]
    if timed:
        figure(Drawing("throughput_vs_size.png", _per_loss, timed,
                       {"ylabel": "elements / s", "line": itemgetter("elements_per_s")}),
               "Throughput against size",
               "Elements per second of the forward loss (median of calibrated samples) on typical inputs; "
               "higher is faster.")
        figure(Drawing("bandwidth_fraction_vs_size.png", _per_loss, timed,
                       {"ylabel": "fraction of bandwidth limit", "line": itemgetter("forward_bw_fraction")}),
               "Fraction of the measured memory bandwidth",
               "Minimum bytes moved per second divided by the machine's measured STREAM limit: near 1 the "
               "loss runs as fast as memory allows; far below, it is compute or overhead bound.")
        figure(Drawing("accuracy_vs_speed.png", _pareto, timed), "Accuracy against speed",
               "Each point is a choice at the loss's largest timed size; the red line joins the choices no other "
               "beats on both time and error (the Pareto front): pick from it.")
    if gradients:
        typical_gradients = [g for g in gradients if g["regime"] == REGIME and g["status"] != "no_gradient"]
        figure(Drawing("gradient_accuracy.svg", _heatmap, typical_gradients,
                       {"title": "gradient, typical inputs", "value": itemgetter("max_ulp")}),
               "Gradient accuracy on typical inputs",
               "As the accuracy squares, for d(loss)/d(input) against the reference derivative; a square much "
               "brighter than its forward square is a loss accurate forward and wrong backward.")
    pairs = mode_pairs(cells)
    if pairs:
        figure(Drawing("compiled_vs_eager.png", _modes_figure, [[e, c] for e, c in pairs]), "Compiled against eager",
               "Each point is a cell measured both ways (same loss, framework, impl, dtype, regime and size): its "
               "worst ULP error eager (across) and compiled (up). Above the grey diagonal compiling lost accuracy, "
               "below it gained; the largest differences are listed below.")
    history = asv_history(asv_results) if asv_results.is_dir() else {}
    if history:
        figure(Drawing("asv_history.png", _history_figure, history), "Speed history (asv)",
               "Forward time of the asv anchor cases (mse and cross_entropy, torch float32) per commit in "
               ".asv/results: a step up is a speed regression.")
    (out / "loss").mkdir(exist_ok=True)
    losses = [spec for spec in registry.iter_losses() if any(r["loss"] == spec.name for r in cells)]
    for spec in losses:
        figure(Drawing(f"loss/{spec.name}.png", _loss_figure,
                       [r for r in cells if r["loss"] == spec.name and r["regime"] == REGIME and r["status"] == "ok"]),
               shown=False)
    for drawing, drawn in zip(to_draw, _draw_all(to_draw, out, jobs)):
        drawn_now[drawing.file]["drawn"] = drawn
    report.figures = [f for f in listed if drawn_now[f.file]["drawn"]]
    atlas = store.atlas()
    value_threads = {r.id: r.environment["value_threads"] for r in store.runs()}
    for spec in losses:
        page = loss_page(spec, [r for r in cells if r["loss"] == spec.name],
                         [g for g in gradients if g["loss"] == spec.name],
                         [e for e in atlas if e["loss"] == spec.name],
                         f"{spec.name}.png" if drawn_now[f"loss/{spec.name}.png"]["drawn"] else None, value_threads)
        _written(out, f"loss/{spec.name}.html", lambda p, text=page: p.write_text(text))
        report.pages.append(f"loss/{spec.name}.html")
    _written(out, FIGURE_CACHE, lambda p: p.write_text(json.dumps(drawn_now)))
    context = _context(store, cells, gradients)
    context["answers"] = answers(registry.names(), cells, gradients, atlas)
    context["changes"] = changes
    index = _html(report, context, atlas)
    _written(out, "index.html", lambda p: p.write_text(index))
    _written(out, "summary.md", lambda p: p.write_text(_markdown(report, context)))
    return report


def _context(store: Store, cells: list[Row], gradients: list[Row]) -> dict[str, Any]:
    runs = store.runs()
    # This machine's environment is its latest CPU run's; a merged device run adds its own lines.
    last = next((r for r in reversed(runs) if "cpu" in r.config.get("devices", ["cpu"])), runs[-1] if runs else None)
    devices = {d: r for r in runs for d in r.config.get("devices", ()) if d != "cpu"}
    ok = [r for r in cells if r["status"] == "ok"]
    worst = sorted(_at_worst_size((r for r in ok if worst_ulp(r) is not None), worst_ulp),
                   key=lambda r: -(worst_ulp(r) or 0))[:15]
    worse_backward = sorted(_at_worst_size((g for g in gradients if far_worse_backward(g)), backward_ratio),
                            key=lambda g: -backward_ratio(g))[:15]
    return {
        "environment": last.environment if last else Environment({}),
        "device_runs": {d: [f"{d} run (run {r.id}): {line}" for line in r.environment.lines()]
                        for d, r in sorted(devices.items())},
        "config": last.config if last else {},
        "runs": len(runs),
        "cells": len(cells),
        "statuses": dict(sorted(Counter(r["status"] for r in cells).items())),
        "gradients": len(gradients),
        "worst": worst,
        "worse_backward": worse_backward,
        "mode_differences": _by_difference(mode_pairs(cells), ("eager_ulp", "compiled_ulp")),
        "device_differences": _by_difference(
            ((a, {**b, "cpu_version": a["framework_version"]}) for a, b in device_pairs(cells)
             if a["reduced_reference"] is not None and b["reduced_reference"] is not None),  # both over every item
            ("cpu_ulp", "cuda_ulp")),
        "device_speed": _device_speed(cells),
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


_CELL_APART_FROM_SIZE = tuple(c for c in MATCHED_ON if c != "size")  # framework versions grouped too


def _latest_bandwidth(store: Store) -> list[Row]:
    """Each device's STREAM results of the latest run that measured it (a later
    untimed run measures none; a merged device run measures its own device)."""
    rows = store.bandwidth()
    latest = {r["device"]: r["run_id"] for r in sorted(rows, key=lambda r: r["run_id"])}
    return [r for r in rows if r["run_id"] == latest[r["device"]]]


def _device_speed(cells: Sequence[Row]) -> list[Row]:
    """Cells timed on both CPU and CUDA at the largest size timed on both: each
    device's elements per second and fraction of its own bandwidth limit."""
    timed = [(a, b) for a, b in device_pairs(cells) if a.get("forward_seconds") and b.get("forward_seconds")]
    largest = max((a["size"] for a, _ in timed), default=None)
    return [{**b, "cpu_elements_per_s": a["elements_per_s"], "cuda_elements_per_s": b["elements_per_s"],
             "cpu_bw_fraction": a["forward_bw_fraction"], "cuda_bw_fraction": b["forward_bw_fraction"]}
            for a, b in timed if a["size"] == largest]


WORST_NOTE = ("One row per cell at its worst size (sizes: how many sizes of that cell are stored); "
              "worst of max_ulp and reduced_ulp first. max_bits: bits of error, log2(1 + floats of the dtype "
              "between result and correctly rounded reference), 0 to the dtype's width; empty for rows stored "
              "before schema 8.")
WORST_COLUMNS = ("loss", "framework", "impl", "dtype", "mode", "regime", "size", "sizes", "max_ulp", "max_bits",
                 "reduced_ulp", "max_rel", "unexpected_nonfinite")
MODE_COLUMNS = ("loss", "framework", "impl", "dtype", "regime", "size", "eager_ulp", "compiled_ulp")
DEVICE_COLUMNS = ("loss", "framework", "impl", "dtype", "mode", "regime", "size", "cpu_ulp", "cuda_ulp", "cpu_version",
                  "framework_version")
DEVICE_NOTE = ("The same inputs on this machine's CPU and a CUDA device (a device run merged in: its framework "
               "version is the last column, the CPU's the one before): the largest differences of worst ULP error, "
               "at the sizes both measured over every item.")
DEVICE_SPEED_COLUMNS = ("loss", "framework", "impl", "dtype", "mode", "size", "cpu_elements_per_s",
                        "cuda_elements_per_s", "cpu_bw_fraction", "cuda_bw_fraction")
WORSE_BACKWARD_COLUMNS = ("loss", "framework", "impl", "dtype", "mode", "regime", "size", "sizes", "max_ulp",
                          "forward_max_ulp")


def _tables(context: dict[str, Any]) -> list[tuple[str, str, Sequence[Row], Sequence[str]]]:
    """The report's tables, in order: (title, note, rows, columns); both the page and
    summary.md show each that has rows."""
    return [
        ("Least accurate cells", WORST_NOTE, context["worst"], WORST_COLUMNS),
        ("Largest compiled-against-eager accuracy differences", "", context["mode_differences"], MODE_COLUMNS),
        ("Largest CPU-against-CUDA accuracy differences", DEVICE_NOTE, context["device_differences"], DEVICE_COLUMNS),
        ("CPU against CUDA: throughput and fraction of each device's bandwidth", "", context["device_speed"],
         DEVICE_SPEED_COLUMNS),
        (f"Gradients far worse than the forward value (over {WORSE_BACKWARD}x the forward max ulp)", "",
         context["worse_backward"], WORSE_BACKWARD_COLUMNS),
    ]


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
    for device_lines in context["device_runs"].values():
        lines += device_lines
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
    if context["changes"] is not None:
        parts.append(_html_changes(context["changes"]))
    for title, note, rows, columns in _tables(context):
        if rows:
            parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p>{html.escape(note)}</p>" if note else "")
                         + _html_table(rows, columns))
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


def _change_lines(found: Comparison) -> list[str]:
    """The comparison as a reader scans it: counts per group, then each changed cell."""
    counts = ", ".join(f"{len(getattr(found, g))} {g.replace('_', ' ')}" for g in Comparison.GROUPS)
    lines = [f"Against {found.base}: {found.matched} cells matched; {counts}; {len(found.base_only)} only before, "
             f"{len(found.head_only)} only now."]
    for group in Comparison.GROUPS:
        for c in getattr(found, group):
            cell = " ".join(str(v) for k, v in zip(MATCHED_ON, c.cell) if k not in ("params", "width", "seed"))
            lines.append(f"{group.replace('_', ' ')}: {cell}: {c.what} {format_cell(c.base)} -> {format_cell(c.head)}")
    return lines


def _html_changes(found: Comparison) -> str:
    head, *rest = _change_lines(found)
    return (f"<h2>Changes since {html.escape(str(found.base))}</h2><p>{html.escape(head)}</p><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in rest) + "</ul>")


def _html_answers(rows: Sequence[Answer]) -> list[str]:
    if not rows:
        return []
    head = "".join(f"<th>{html.escape(t)}</th>" for t in Answer.TITLES)
    body = "".join(f"<tr><td><a href='loss/{html.escape(a.loss)}.html'>{html.escape(a.loss)}</a></td>"
                   + "".join(f"<td>{html.escape(str(getattr(a, c)))}</td>" for c in Answer.COLUMNS[1:]) + "</tr>"
                   for a in rows)
    return [f"<h2>Which choice for each loss</h2><p>{html.escape(ANSWERS_NOTE)}</p>"
            f"<table><tr>{head}</tr>{body}</table>"]


def _markdown(report: Report, context: dict[str, Any]) -> str:
    lines = ["# lossbench report", ""]
    if context["answers"]:
        lines += ["## Which choice for each loss", "", ANSWERS_NOTE, "", "| " + " | ".join(Answer.TITLES) + " |",
                  "|" + "---|" * len(Answer.TITLES)]
        lines += [f"| [{markdown_text(a.loss)}](loss/{a.loss}.html) | "
                  + " | ".join(markdown_text(getattr(a, c)) for c in Answer.COLUMNS[1:]) + " |"
                  for a in context["answers"]] + [""]
    lines += [*(f"- {markdown_text(x)}" for x in _environment_lines(context)), ""]
    if context["changes"] is not None:
        head, *rest = _change_lines(context["changes"])
        lines += [f"## Changes since {markdown_text(str(context['changes'].base))}", "", markdown_text(head), "",
                  *(f"- {markdown_text(line)}" for line in rest), ""]
    for f in report.figures:
        lines += [f"## {f.title}", "", f.how_to_read, "", f"![{f.title}]({f.file})", ""]
    for title, note, rows, columns in _tables(context):
        if rows:
            lines += [f"## {title}", "", *([note, ""] if note else []), "| " + " | ".join(columns) + " |",
                      "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(markdown_text(format_cell(r.get(c))) for c in columns) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
