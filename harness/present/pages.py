"""A page per loss (reports/latest/loss/<name>.html): its definition and
parameters, its conventions-atlas entries, accuracy by choice and regime with
the numbers in coloured squares, its figure of error, throughput and bandwidth
against size, gradient accuracy, and the `lossbench eval` command that
reproduces its worst cell."""
from __future__ import annotations

import html
import json
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.model.spec import ALL_REGIMES, LossSpec
from harness.present.render import describe, format_cell
from harness.present.scales import BAND_COLOURS, BANDS, band, choice, worst_ulp

Row = dict[str, Any]
STYLE = ("body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
         "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
         "td.n{text-align:right}img{max-width:100%}code{white-space:pre-wrap;word-break:break-all}")


def squares(rows: Sequence[Row], value: Callable[[Row], float | None]) -> str:
    """Choice x regime: the worst value over sizes in a square coloured by its band,
    the number printed; (nf) marks unexpected non-finite results, grey a failure."""
    grouped: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        grouped.setdefault((choice(r), r["regime"]), []).append(r)
    regimes = [g for g in ALL_REGIMES if any(regime == g for _, regime in grouped)]
    choices = sorted({c for c, _ in grouped})
    head = "<tr><th>framework:impl dtype</th>" + "".join(f"<th>{html.escape(g)}</th>" for g in regimes) + "</tr>"
    body = []
    for c in choices:
        cells = []
        for g in regimes:
            here = grouped.get((c, g), [])
            values = [v for r in here if r["status"] == "ok" and (v := value(r)) is not None]
            nonfinite = any(r["status"] == "ok" and r.get("unexpected_nonfinite") for r in here)
            if values:
                worst = max(values)
                colour = BAND_COLOURS[band(worst, here[0]["dtype"])]
                mark = " (nf)" if nonfinite else ""
                cells.append(f"<td class='n' style='background:{colour}'>{html.escape(_number(worst))}{mark}</td>")
            elif any(r["status"] != "ok" for r in here):
                cells.append("<td style='background:#999'>failed</td>")
            else:
                cells.append("<td>" + ("(nf)" if nonfinite else "") + "</td>")
        body.append(f"<tr><td>{html.escape(c)}</td>{''.join(cells)}</tr>")
    legend = "; ".join(f"<span style='background:{c}'>&nbsp;&nbsp;&nbsp;</span> {html.escape(b)}"
                       for c, b in zip(BAND_COLOURS, BANDS))
    return f"<p>{legend}; (nf) unexpected non-finite results; grey: failed.</p><table>{head}{''.join(body)}</table>"


def _number(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:.3g}"


def reproduce(row: Row, spec: LossSpec, threads: int | None) -> str:
    """The `lossbench eval` command that measures this cell's inputs again, item by item
    (or its reduction, where that was the worse error), with the ``threads`` its run
    measured values with (None: a run from before runs recorded them)."""
    per_item = (row["max_ulp"] or 0.0) >= (row.get("reduced_ulp") or 0.0)
    values = row["size"] * len(spec.args)
    argv = ["lossbench", "eval", row["loss"], "--framework", row["framework"], "--impl", row["impl"],
            "--dtype", row["dtype"], "--device", row["device"], "--mode", row["mode"], "--regime", row["regime"],
            "--size", str(row["size"]), "--seed", str(row["seed"]), "--width", str(row["width"])]
    argv += [a for name, v in json.loads(row["params"] or "{}").items() for a in ("--param", f"{name}={v!r}")]
    argv += ["--reduction", "none"] if per_item else []
    argv += ["--max-elements", str(values)] if values > 200_000 else []
    argv += ["--threads", str(threads)] if threads is not None else []
    return " ".join(shlex.quote(a) for a in [*argv, "--json"])


def loss_page(spec: LossSpec, cells: Sequence[Row], gradients: Sequence[Row], entries: Sequence[dict[str, Any]],
              figure: str | None, value_threads: Mapping[int, int | None]) -> str:
    """The page of one loss, from its stored rows (``figure``: its image file, if drawn;
    ``value_threads``: each run's threads of its values)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(spec.name)} - lossbench</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<p><a href='../index.html'>lossbench report</a></p><h1>{html.escape(spec.name)}</h1>",
             f"<p>{html.escape(spec.definition)}</p><ul>"
             f"<li>family: {html.escape(spec.family)}; layout: {html.escape(spec.layout.name.lower())}</li>"
             f"<li>arguments: {html.escape(', '.join(f'{a.name} ({a.domain.name.lower()})' for a in spec.args))}</li>"
             f"<li>parameters: {html.escape(', '.join(f'{p.name} = {p.default:g}' for p in spec.params) or 'none')}"
             f"</li><li>regimes: {html.escape(', '.join(spec.regimes))}; default reduction: "
             f"{html.escape(spec.default_reduction)}</li></ul>"]
    ok = [r for r in cells if r["status"] == "ok" and worst_ulp(r) is not None]
    worst = max(ok, key=lambda r: worst_ulp(r) or 0.0, default=None)
    if worst is not None:
        command = reproduce(worst, spec, value_threads.get(worst["run_id"]))
        parts.append(f"<h2>Worst cell</h2><p>{html.escape(choice(worst))} on {html.escape(worst['regime'])} inputs "
                     f"of {worst['size']:g} elements: {_number(worst_ulp(worst) or 0.0)} ulp"
                     f"{' (max bits ' + format_cell(worst['max_bits']) + ')' if worst.get('max_bits') is not None else ''}"
                     f". To look at it item by item:</p><p><code>{html.escape(command)}</code></p>")
    parts.append("<h2>Accuracy</h2><p>Worst ULP error over every size (element-wise or of the reduction, the worse), "
                 "per choice and input regime.</p>" + squares(cells, worst_ulp))
    if figure:
        parts.append("<h2>Against size</h2><p>Typical inputs, eager cells: ULP error of the reduction, elements per "
                     "second and the fraction of the measured memory bandwidth, a column per framework (its colour), "
                     "a marker per dtype, a line style per impl.</p>"
                     f"<img src='{html.escape(figure)}' alt='{html.escape(spec.name)} against size'>")
    measured = [g for g in gradients if g["status"] != "no_gradient"]
    if measured:
        parts.append("<h2>Gradient accuracy</h2><p>Worst ULP error of d(loss)/d(input) over every size.</p>"
                     + squares(measured, lambda g: g["max_ulp"]))
    if entries:
        parts.append("<h2>Conventions atlas</h2>")
        for entry in entries:
            head, *body = describe(entry, all_edges=True, limit=1000)
            parts.append(f"<details><summary>{html.escape(head)}</summary>"
                         f"<pre>{html.escape(chr(10).join(body))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)
