#!/usr/bin/env python3
"""Draws the project's figures (PNG, matplotlib) from the JSON records the `tq` tools write.

    scripts/plot.py RECORD.json [RECORD.json ...] [--out PATH] [--kind KIND]

The kind of each record is recognised from its fields (or forced with --kind):

    niah         `tq niah --json-out FILE`: one accuracy heatmap per run (scheme x mode),
                 context lengths x needle depths, named DIR/niah_<scheme>_<mode>.png
    quality      bench/results/quality.json of scripts/report.py: mean KLD against the fp16
                 cache versus stored bits per value, one series per scheme family
    bench        `tq bench --out PREFIX`: decode tokens/s and attention ms vs context
    sensitivity  `tq sensitivity --out PREFIX`: KLD per layer, keys and values separately
    cuda_attention  bench/cuda/report.py's cuda_attention*.json: GPU decode-attention speed-up
                 over fp16 SDPA against context, one panel per model shape and batch

--out is the PNG to write (for niah: the directory of the heatmaps). Without it a figure goes
next to its record: PREFIX.json -> PREFIX.png, quality.json -> quality_kld_vs_bits.png, niah
heatmaps into the record's directory. `tq niah|bench|sensitivity --plot` runs this script.

Each kind is one FigureKind in FIGURE_KINDS: a test that recognises the record, the default
output and a function that validates and draws it; a new figure is a new entry there.

Exit status: 0 drawn; 2 bad input (unreadable file, not JSON, or a record without the fields
its figure needs; the message names the file and the field); 3 matplotlib is not installed.
`--check` only tests that matplotlib can be imported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np  # a dependency of matplotlib
    from matplotlib import pyplot as plt
    from matplotlib import ticker
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    MATPLOTLIB_ERROR: ImportError | None = None
except ImportError as error:  # reported by require_matplotlib(), not as a traceback
    MATPLOTLIB_ERROR = error

EXIT_BAD_INPUT = 2
EXIT_MISSING_DEPENDENCY = 3

STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "savefig.dpi": 150,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}
TITLE_SIZE = 13
CAPTION_COLOR = "#555555"
MISSING_CELL_COLOR = "#d9d9d9"


class RecordError(Exception):
    """A record that cannot be drawn; the message names the file and the bad field."""


class MissingDependency(Exception):
    """matplotlib cannot be imported."""


def require_matplotlib() -> None:
    """Raises MissingDependency with the install command when matplotlib is missing."""
    if MATPLOTLIB_ERROR is not None:
        raise MissingDependency(
            f"matplotlib is not installed for {sys.executable} ({MATPLOTLIB_ERROR}); "
            f"install it with `{Path(sys.executable).name} -m pip install matplotlib` "
            "or run scripts/setup.sh")


# ---------------------------------------------------------------------------------------------
# Reading records: every access names the field it needs, so a malformed record gives a message
# such as "decode.json: rows[3].context: expected a number, got 'abc'".

def load_record(path: Path) -> dict[str, Any]:
    """Parses a JSON file whose top level is an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RecordError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not valid JSON (line {error.lineno}, column "
                          f"{error.colno}: {error.msg})") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: expected a JSON object at the top level, got "
                          f"{type(record).__name__}")
    return record


def _describe(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field(obj: dict[str, Any], key: str, where: str) -> Any:
    """obj[key], or a RecordError naming where.key."""
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: expected an object, got {_describe(obj)}")
    if key not in obj:
        raise RecordError(f"{where}: missing field '{key}'")
    return obj[key]


def number_value(value: Any, where: str, optional: bool = False) -> float | None:
    """A finite number (None for null when optional: the tools write NaN as null)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise RecordError(f"{where}: expected a number, got {_describe(value)}")
    return float(value)


def number(obj: dict[str, Any], key: str, where: str, optional: bool = False
           ) -> float | None:
    """The number field obj[key]; an optional field may also be absent."""
    if optional and isinstance(obj, dict) and key not in obj:
        return None
    return number_value(field(obj, key, where), f"{where}.{key}", optional)


def text_field(obj: dict[str, Any], key: str, where: str) -> str:
    value = field(obj, key, where)
    if not isinstance(value, str):
        raise RecordError(f"{where}.{key}: expected a string, got {_describe(value)}")
    return value


def list_field(obj: dict[str, Any], key: str, where: str, non_empty: bool = True
               ) -> list[Any]:
    value = field(obj, key, where)
    if not isinstance(value, list):
        raise RecordError(f"{where}.{key}: expected a list, got {_describe(value)}")
    if non_empty and not value:
        raise RecordError(f"{where}.{key}: empty, nothing to plot")
    return value


def number_list(obj: dict[str, Any], key: str, where: str) -> list[float]:
    return [number_value(v, f"{where}.{key}[{i}]")
            for i, v in enumerate(list_field(obj, key, where))]


def has_items_with(record: dict[str, Any], list_key: str, item_key: str) -> bool:
    """Whether record[list_key] is a non-empty list of objects that all have item_key: how
    the kinds recognise their records."""
    items = record.get(list_key)
    return isinstance(items, list) and bool(items) and all(
        isinstance(item, dict) and item_key in item for item in items)


# ---------------------------------------------------------------------------------------------
# Labels shared by the figures.

def tokens_label(count: float) -> str:
    """1024 -> '1k', 131072 -> '128k', 1048576 -> '1M', 1000 -> '1000'."""
    n = int(count)
    if n == count and n > 0 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n == count and n > 0 and n % 1024 == 0:
        return f"{n // 1024}k"
    return f"{count:g}"


def file_tag(scheme: str) -> str:
    """A file-name-safe scheme ('tq3.5:protect=1/1,window=0' -> 'tq3.5_protect-1-1_window-0')."""
    out = []
    for c in scheme:
        if c.isascii() and (c.isalnum() or c in ".-_"):
            out.append(c)
        elif c in ":,":
            out.append("_")
        else:
            out.append("-")
    return "".join(out)


def niah_png_name(kv: str, mode: str) -> str:
    """File name of the heatmap of one NIAH run."""
    return f"niah_{file_tag(kv)}_{file_tag(mode)}.png"


def split_scheme(kv: str) -> tuple[str, list[str]]:
    """'tq4:kcodec=prod,protect=2/0' -> ('tq4', ['kcodec=prod', 'protect=2/0'])."""
    base, _, options = kv.partition(":")
    return base, [o for o in options.split(",") if o]


def scheme_family(kv: str) -> str:
    """The series a scheme is drawn in: its codec family plus its explicit options."""
    base, options = split_scheme(kv)
    blocks = ("q8", "q4", "q4_0", "q8_0", "q4_1", "q5_0", "iq4nl", "iq4_nl")
    if base in blocks:
        name = "int block"
    elif base.endswith("r") and base[:-1] in blocks:
        name = "int block + rotation"
    elif base == "fp16":
        name = "fp16"
    else:
        prod = "kcodec=prod" in options
        name = "TurboQuant prod keys" if prod else "TurboQuant MSE"
    rest = [o for o in options if not o.startswith("kcodec=")]
    return ", ".join([name] + rest)


def _new_figure(width: float, height: float, **subplots: Any) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(figsize=(width, height), layout="constrained", **subplots)
    return fig, axes


def _titles(fig: Figure, title: str, caption: str) -> None:
    """Bold title on top; a grey line of context (model, sizes, method) under the plot."""
    fig.suptitle(title, fontsize=TITLE_SIZE, fontweight="bold")
    if caption:
        # Outside the layout box: savefig's tight bounding box grows to include it.
        fig.text(0.0, -0.01, caption, ha="left", va="top", fontsize=8.5,
                 color=CAPTION_COLOR, transform=fig.transFigure)


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", pad_inches=0.15,
                metadata={"Software": "turboquant scripts/plot.py"})
    plt.close(fig)
    return out


def _log_axis_labels(axis: Any) -> None:
    """Decimal labels (0.01, 0.001) on a log axis spanning a few decades, else 10^k."""
    axis.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if 1e-4 <= v < 1e4 else f"$10^{{{math.log10(v):.0f}}}$"))
    axis.set_minor_formatter(ticker.NullFormatter())


# ---------------------------------------------------------------------------------------------
# NIAH heatmaps: `tq niah` JSON, {"model", "haystack", "runs": [{"kv", "mode", "needles",
# "accuracy", "contexts", "depths", "seeds", "table": [[accuracy or null per depth] per
# context], "cells": [...]}]}.

def is_niah(record: dict[str, Any]) -> bool:
    return has_items_with(record, "runs", "table")


def draw_niah(record: dict[str, Any], source: Path, out: Path | None) -> list[Path]:
    runs = list_field(record, "runs", str(source))
    directory = out if out is not None else source.parent
    if directory.suffix.lower() == ".png":
        raise RecordError(f"{source}: a NIAH record draws one heatmap per run; --out names "
                          f"their directory, got the file name {directory}")
    return [draw_niah_run(run, f"{source}: runs[{i}]", directory)
            for i, run in enumerate(runs)]


def draw_niah_run(run: dict[str, Any], where: str, directory: Path) -> Path:
    kv = text_field(run, "kv", where)
    mode = text_field(run, "mode", where)
    contexts = number_list(run, "contexts", where)
    depths = number_list(run, "depths", where)
    table = list_field(run, "table", where)
    if len(table) != len(contexts):
        raise RecordError(f"{where}.table: {len(table)} rows, expected one per context "
                          f"({len(contexts)})")
    values: list[list[float]] = []
    for r, row in enumerate(table):
        if not isinstance(row, list) or len(row) != len(depths):
            raise RecordError(f"{where}.table[{r}]: expected a list of {len(depths)} "
                              f"accuracies (one per depth), got {_describe(row)}")
        cells = [number_value(v, f"{where}.table[{r}][{c}]", optional=True)
                 for c, v in enumerate(row)]
        for c, v in enumerate(cells):
            if v is not None and not 0 <= v <= 1:
                raise RecordError(f"{where}.table[{r}][{c}]: accuracy {v:g} outside [0, 1]")
        values.append([math.nan if v is None else v for v in cells])
    accuracy = number(run, "accuracy", where, optional=True)
    seeds = number(run, "seeds", where, optional=True)
    needles = number(run, "needles", where, optional=True)
    cells = run.get("cells")
    correct = total = None
    if isinstance(cells, list) and cells:
        total = len(cells)
        correct = sum(1 for c in cells if isinstance(c, dict) and c.get("correct") is True)

    grid = np.ma.masked_invalid(np.array(values, dtype=float))
    n_rows, n_cols = grid.shape
    # Cells of about 0.95 x 0.55 in; a small grid still leaves room for the title and labels.
    fig, ax = _new_figure(max(5.6, 2.4 + 0.95 * n_cols), max(3.4, 1.5 + 0.55 * n_rows))
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad=MISSING_CELL_COLOR)
    mesh = ax.pcolormesh(grid, cmap=cmap, vmin=0.0, vmax=1.0, edgecolors="white",
                         linewidth=2.0)
    ax.invert_yaxis()  # the shortest context on top, as the grid is run
    ax.set_xticks([c + 0.5 for c in range(n_cols)],
                  [f"{100 * d:.0f}%" for d in depths])
    ax.set_yticks([r + 0.5 for r in range(n_rows)], [tokens_label(c) for c in contexts])
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("needle depth in the haystack")
    ax.set_ylabel("context length (tokens)")
    for r in range(n_rows):
        for c in range(n_cols):
            v = values[r][c]
            label = "n/a" if math.isnan(v) else f"{100 * v:.0f}%"
            rgba = cmap(0.5 if math.isnan(v) else v)
            luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
            ax.text(c + 0.5, r + 0.5, label, ha="center", va="center", fontsize=10,
                    fontweight="bold", color="white" if luminance < 0.5 else "#222222")
    bar = fig.colorbar(mesh, ax=ax, ticks=[0, 0.5, 1], fraction=0.08, pad=0.03,
                       aspect=max(8, 6 * n_rows))
    bar.ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=0))
    bar.set_label("cells correct")
    bar.outline.set_visible(False)

    title = f"NIAH {mode} \u2014 {kv}"
    if accuracy is not None:
        title += f" \u2014 {100 * accuracy:.0f}%"
    details = []
    if correct is not None:
        details.append(f"{correct}/{total} cells correct")
    if mode == "multi" and needles is not None:
        details.append(f"{needles:.0f} needles, all required")
    if seeds is not None:
        details.append(f"{seeds:.0f} seed{'s' if seeds != 1 else ''} per cell")
    _titles(fig, title, ", ".join(details))
    return _save(fig, directory / niah_png_name(kv, mode))


# ---------------------------------------------------------------------------------------------
# Quality vs size: quality.json of scripts/report.py, {"meta": {...}, "rows": [{"kv",
# "bits_per_value", "kld_mean", "kld_mean_stderr", ...}]}.

def is_quality(record: dict[str, Any]) -> bool:
    rows = record.get("rows")
    return isinstance(record.get("meta"), dict) and isinstance(rows, list) and any(
        isinstance(r, dict) and "kld_mean" in r for r in rows)


def draw_quality(record: dict[str, Any], source: Path, out: Path | None) -> list[Path]:
    where = str(source)
    rows = list_field(record, "rows", where)
    families: dict[str, list[tuple[float, float, float, str]]] = {}
    for i, row in enumerate(rows):
        at = f"{where}: rows[{i}]"
        kv = text_field(row, "kv", at)
        bits = number(row, "bits_per_value", at, optional=True)
        kld = number(row, "kld_mean", at)
        if kv == "fp16" or bits is None or kld <= 0:
            continue  # the reference itself, or a scheme without a size (not benchmarked)
        stderr = number(row, "kld_mean_stderr", at, optional=True) or 0.0
        families.setdefault(scheme_family(kv), []).append((bits, kld, stderr,
                                                           split_scheme(kv)[0]))
    if not families:
        raise RecordError(f"{where}: no compressed scheme with bits_per_value and a positive "
                          "kld_mean: nothing to plot")

    ranges = x_ranges([p[0] for points in families.values() for p in points])
    widths = [max(hi - lo, 1.0) for lo, hi in ranges]
    fig, axes = _new_figure(10.5, 6.2, ncols=len(ranges), sharey=True, squeeze=False,
                            width_ratios=widths)
    axes = list(axes[0])
    markers = "osD^v<>phX*"
    for index, (name, points) in enumerate(sorted(families.items(), key=_family_order)):
        points.sort()
        color = f"C{index % 10}"
        for ax in axes:
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[p[2] for p in points], color=color,
                        marker=markers[index % len(markers)], markersize=6, linewidth=1.4,
                        alpha=0.9, capsize=2, label=name)
            for x, y, _, label in points:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4),
                            fontsize=7.5, color=color)
    for ax, (lo, hi) in zip(axes, ranges):
        pad = 0.04 * (ranges[-1][1] - ranges[0][0]) + 0.1
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=max(2, int(hi - lo) + 2),
                                                      steps=[1, 2, 5, 10]))
    _break_marks(axes)
    axes[0].set_yscale("log")
    _log_axis_labels(axes[0].yaxis)
    axes[0].set_ylabel("mean KL divergence vs the fp16 cache (nats)")
    fig.supxlabel("stored bits per value (codes + norms/scales, fp16 window included)",
                  fontsize=10)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="scheme family",
                    title_fontsize=9)
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    details = []
    if isinstance(meta.get("model"), str):
        details.append(os.path.basename(meta["model"]))
    if isinstance(meta.get("tokens_scored"), (int, float)):
        details.append(f"{meta['tokens_scored']:g} scored tokens")
    if isinstance(meta.get("context"), (int, float)):
        details.append(f"context {meta['context']:g}")
    details.append("lower left is better; error bars: standard error of the mean")
    _titles(fig, "Mean KLD vs fp16 cache against stored bits per value", ", ".join(details))
    target = out if out is not None else source.with_name(source.stem + "_kld_vs_bits.png")
    return [_save(fig, target)]


def x_ranges(xs: Sequence[float]) -> list[tuple[float, float]]:
    """The data's x range, or two ranges when one empty gap takes most of it (the 8.5-bit
    baselines far right of the 3-5 bit schemes): drawn as a broken axis, so the crowded part
    keeps its width."""
    values = sorted(set(xs))
    if len(values) < 3:
        return [(values[0], values[-1])]
    gap, left, right = max((b - a, a, b) for a, b in zip(values, values[1:]))
    if gap < 0.5 * (values[-1] - values[0]):
        return [(values[0], values[-1])]
    return [(values[0], left), (right, values[-1])]


def _break_marks(axes: Sequence[Axes]) -> None:
    """Hides the inner spines of a broken x axis and draws the usual diagonal marks."""
    if len(axes) < 2:
        return
    kwargs = dict(marker=[(-1, -1.5), (1, 1.5)], markersize=10, linestyle="none",
                  color="black", mec="black", mew=1, clip_on=False)
    for left, right in zip(axes, axes[1:]):
        left.spines["right"].set_visible(False)
        right.spines["left"].set_visible(False)
        right.tick_params(axis="y", which="both", left=False)
        left.plot([1], [0], transform=left.transAxes, **kwargs)
        right.plot([0], [0], transform=right.transAxes, **kwargs)


def _family_order(item: tuple[str, list[Any]]) -> tuple[int, str]:
    # TurboQuant families first, then the integer baselines, each alphabetically.
    name = item[0]
    return (0 if name.startswith("TurboQuant") else 1, name)


# ---------------------------------------------------------------------------------------------
# Decode speed: `tq bench` JSON, {"model", "threads", "steps", "rows": [{"kv", "context",
# "tokens_per_second", "attention_ms", "method", ...}]}; `tq bench --device cuda` rows also carry
# "batch" (one line per scheme and batch); its prefill rows ("kind": "prefill") and rows skipped
# for memory ("skipped") are left out.

BenchPoint = tuple[float, float, float | None]  # context, tokens/s, attention ms


def is_bench_timing(row: Any) -> bool:
    """A row that carries no decode speed by design: a GPU bench prefill timing or a row
    skipped for memory."""
    return isinstance(row, dict) and (row.get("kind") == "prefill" or "skipped" in row)


def is_bench(record: dict[str, Any]) -> bool:
    rows = record.get("rows")
    if not isinstance(rows, list):
        return False
    decode = [row for row in rows if not is_bench_timing(row)]
    return has_items_with({"rows": decode}, "rows", "tokens_per_second")


def draw_bench(record: dict[str, Any], source: Path, out: Path | None) -> list[Path]:
    where = str(source)
    rows = list_field(record, "rows", where)
    series: dict[str, list[BenchPoint]] = {}
    methods = set()
    for i, row in enumerate(rows):
        at = f"{where}: rows[{i}]"
        if is_bench_timing(row):
            continue
        kv = text_field(row, "kv", at)
        if isinstance(row.get("batch"), int):
            kv = f"{kv}, batch {row['batch']}"
        context = number(row, "context", at)
        tps = number(row, "tokens_per_second", at)
        attention = number(row, "attention_ms", at, optional=True)
        series.setdefault(kv, []).append((context, tps, attention))
        if isinstance(row.get("method"), str):
            methods.add(row["method"])
    for points in series.values():
        points.sort()
    contexts = sorted({p[0] for points in series.values() for p in points})
    panels = [(1, "decode speed (tokens/s)")]
    if all(p[2] is not None for points in series.values() for p in points):
        panels.append((2, "attention per decode step (ms, all layers)"))

    # Many schemes at a few contexts read best as one row per scheme; few schemes or many
    # contexts as one line per scheme.
    if len(series) > 8 and len(contexts) <= 4:
        fig = _bench_rows(series, contexts, panels)
    else:
        fig = _bench_lines(series, contexts, panels)
    details = []
    if isinstance(record.get("model"), str):
        details.append(os.path.basename(record["model"]))
    if isinstance(record.get("threads"), int):
        threads = record["threads"]
        details.append("all cores" if threads == 0 else f"{threads} threads")
    if isinstance(record.get("steps"), int):
        details.append(f"{record['steps']} timed steps")
    if len(methods) == 1:
        details.append(methods.pop())
    _titles(fig, "Decode speed vs context", ", ".join(details))
    return [_save(fig, out if out is not None else source.with_suffix(".png"))]


def _bench_lines(series: dict[str, list[BenchPoint]], contexts: list[float],
                 panels: list[tuple[int, str]]) -> Figure:
    fig, axes = _new_figure(6.0 * len(panels) + 1.5, 4.8, ncols=len(panels), squeeze=False)
    styles = ["-", "--", ":", "-."]
    markers = "os^Dv<>ph"
    for ax, (column, label) in zip(axes[0], panels):
        for index, (kv, points) in enumerate(series.items()):
            ax.plot([p[0] for p in points], [p[column] for p in points],
                    color=f"C{index % 10}", linestyle=styles[(index // 10) % len(styles)],
                    marker=markers[(index // 10) % len(markers)], markersize=5,
                    linewidth=1.6, label=kv)
        if len(contexts) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(contexts, [tokens_label(c) for c in contexts])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_xlabel("context (tokens in the cache)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="KV cache",
                       title_fontsize=9)
    return fig


def _bench_rows(series: dict[str, list[BenchPoint]], contexts: list[float],
                panels: list[tuple[int, str]]) -> Figure:
    names = list(series)
    fig, axes = _new_figure(5.2 * len(panels) + 2.0, 1.4 + 0.26 * len(names),
                            ncols=len(panels), sharey=True, squeeze=False)
    colors = matplotlib.colormaps["viridis"]
    shade = [colors(0.15 + 0.7 * i / max(len(contexts) - 1, 1)) for i in range(len(contexts))]
    for ax, (column, label) in zip(axes[0], panels):
        for row, kv in enumerate(names):
            values = [p[column] for p in series[kv]]
            ax.plot([min(values), max(values)], [row, row], color="#bbbbbb", linewidth=1.2,
                    zorder=1)
        for i, context in enumerate(contexts):
            rows = [(row, p[column]) for row, kv in enumerate(names)
                    for p in series[kv] if p[0] == context]
            ax.scatter([v for _, v in rows], [r for r, _ in rows], color=shade[i], s=30,
                       zorder=2, label=f"{tokens_label(context)} tokens")
        ax.set_xlabel(label)
        ax.set_xlim(left=0)
        ax.grid(True, axis="x")
        ax.grid(False, axis="y")
        ax.set_ylim(len(names) - 0.4, -0.6)  # the first scheme on top
    axes[0][0].set_yticks(range(len(names)), names, fontsize=8.5)
    axes[0][0].tick_params(axis="y", length=0)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="context",
                       title_fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# Per-layer sensitivity: `tq sensitivity` JSON, {"model", "text", "kv", "context", "chunks",
# "layers": [{"layer", "kld_keys", "kld_values", "top1_keys", "top1_values"}]}.

def is_sensitivity(record: dict[str, Any]) -> bool:
    return has_items_with(record, "layers", "kld_keys")


def draw_sensitivity(record: dict[str, Any], source: Path, out: Path | None) -> list[Path]:
    where = str(source)
    layers = list_field(record, "layers", where)
    kv = text_field(record, "kv", where)
    points: list[tuple[float, float, float]] = []
    for i, row in enumerate(layers):
        at = f"{where}: layers[{i}]"
        points.append((number(row, "layer", at), number(row, "kld_keys", at),
                       number(row, "kld_values", at)))
    points.sort()
    xs = [p[0] for p in points]

    fig, ax = _new_figure(9.5, 5.0)
    drawn = 0
    for column, name, color in ((1, "keys", "C0"), (2, "values", "C3")):
        # A side the scheme keeps in fp16 was not measured (all zeros): no series.
        ys = [p[column] if p[column] > 0 else math.nan for p in points]
        if all(math.isnan(y) for y in ys):
            continue
        drawn += 1
        ax.plot(xs, ys, color=color, marker="o", markersize=4.5, linewidth=1.6,
                label=f"{name} of one layer quantized")
        # Name the two most sensitive layers: the candidates for protection.
        ranked = sorted((i for i in range(len(ys)) if not math.isnan(ys[i])),
                        key=lambda i: ys[i], reverse=True)
        for i in ranked[:2]:
            ax.annotate(f"layer {xs[i]:.0f}", (xs[i], ys[i]), textcoords="offset points",
                        xytext=(7, 0), va="center", fontsize=8.5, color=color)
    if drawn == 0:
        raise RecordError(f"{where}: every kld_keys and kld_values is 0: nothing to plot")
    ax.set_yscale("log")
    _log_axis_labels(ax.yaxis)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean KL divergence vs the fp16 cache (nats)")
    ax.legend(loc="upper right")
    details = ["all other layers fp16"]
    if isinstance(record.get("model"), str):
        details.insert(0, os.path.basename(record["model"]))
    chunks, context = record.get("chunks"), record.get("context")
    if isinstance(chunks, int) and isinstance(context, int):
        details.append(f"{chunks} chunk{'s' if chunks != 1 else ''} of {context} tokens "
                       "(second half scored)")
    _titles(fig, f"Per-layer sensitivity ({kv}, one layer quantized)", ", ".join(details))
    return [_save(fig, out if out is not None else source.with_suffix(".png"))]


# ---------------------------------------------------------------------------------------------
# GPU decode attention: bench/cuda/report.py JSON, {"device", "sms", "copy_gbs", "flush",
# "rows": [{"kernel", "shape", "context", "batch", "us", "gbs", "speedup_vs_sdpa", ...}]}.

def is_cuda_attention(record: dict[str, Any]) -> bool:
    rows = record.get("rows")
    return isinstance(record.get("device"), str) and isinstance(rows, list) and any(
        isinstance(r, dict) and "speedup_vs_sdpa" in r for r in rows)


def draw_cuda_attention(record: dict[str, Any], source: Path, out: Path | None
                        ) -> list[Path]:
    where = str(source)
    device = text_field(record, "device", where)
    panels: dict[tuple[str, float], dict[str, list[tuple[float, float]]]] = {}
    for i, row in enumerate(list_field(record, "rows", where)):
        at = f"{where}: rows[{i}]"
        speedup = number(row, "speedup_vs_sdpa", at, optional=True)
        kernel = text_field(row, "kernel", at)
        if speedup is None or kernel == "sdpa_fp16":
            continue  # kernels without an SDPA counterpart (the quantize step), the baseline
        key = (text_field(row, "shape", at), number(row, "batch", at))
        panels.setdefault(key, {}).setdefault(kernel, []).append(
            (number(row, "context", at), speedup))
    if not panels:
        raise RecordError(f"{where}: no row with speedup_vs_sdpa: nothing to plot")
    keys = sorted(panels)
    columns = 2 if len(keys) > 1 else 1
    rows = (len(keys) + columns - 1) // columns
    fig, axes = _new_figure(6.2 * columns + 2.0, 4.0 * rows, nrows=rows, ncols=columns,
                            squeeze=False, sharey=True)
    kernels = sorted({k for series in panels.values() for k in series}, key=_kernel_order)
    colors = {k: f"C{i % 10}" for i, k in enumerate(kernels)}
    for ax, key in zip(axes.flat, keys):
        contexts = sorted({c for pts in panels[key].values() for c, _ in pts})
        ax.axhline(1.0, color="#444444", linewidth=1.2, linestyle=":", zorder=1)
        for kernel in kernels:
            points = sorted(panels[key].get(kernel, []))
            if points:
                ax.plot([c for c, _ in points], [v for _, v in points], color=colors[kernel],
                        marker="o", markersize=4.5, linewidth=1.6,
                        linestyle="--" if kernel.startswith("fp16") else "-", label=kernel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(contexts, [tokens_label(c) for c in contexts])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}\u00d7"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(f"{key[0]}, batch {key[1]:g}", fontsize=10)
        ax.set_xlabel("context (tokens)")
    for ax in axes[:, 0]:
        ax.set_ylabel("speed-up vs PyTorch SDPA (fp16)")
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="kernel", title_fontsize=9)
    details = [device]
    if isinstance(record.get("copy_gbs"), (int, float)):
        details.append(f"copy bandwidth {record['copy_gbs']:.0f} GB/s")
    if isinstance(record.get("flush"), str):
        details.append(f"L2 flushed ({record['flush']}) before each timed call")
    details.append("median time per decode-attention call; dotted line: SDPA itself")
    _titles(fig, "GPU decode attention: speed-up over fp16 SDPA against context",
            ", ".join(details))
    return [_save(fig, out if out is not None else source.with_suffix(".png"))]


def _kernel_order(kernel: str) -> tuple[int, str]:
    # The tensor-core TurboQuant kernels first (by name), then the others, fp16 last.
    return (2 if kernel.startswith("fp16") else 0 if "_tc" in kernel else 1, kernel)


# ---------------------------------------------------------------------------------------------
# Kinds and the command line.

@dataclass(frozen=True)
class FigureKind:
    name: str
    describe: str  # the record it reads, for messages
    recognises: Callable[[dict[str, Any]], bool]
    # (record, its path, --out or None) -> the PNGs written; raises RecordError.
    draw: Callable[[dict[str, Any], Path, Path | None], list[Path]]


# Order matters for recognition: quality.json also has "rows", so it is tested before bench
# (a bench/cuda record has no tokens_per_second, so bench does not claim it).
FIGURE_KINDS: tuple[FigureKind, ...] = (
    FigureKind("niah", "`tq niah` record (runs with a table)", is_niah, draw_niah),
    FigureKind("quality", "report quality.json (meta, rows with kld_mean)", is_quality,
               draw_quality),
    FigureKind("bench", "`tq bench` record (rows with tokens_per_second)", is_bench,
               draw_bench),
    FigureKind("sensitivity", "`tq sensitivity` record (layers with kld_keys)",
               is_sensitivity, draw_sensitivity),
    FigureKind("cuda_attention", "bench/cuda/report.py record (device, rows with "
               "speedup_vs_sdpa)", is_cuda_attention, draw_cuda_attention),
)


def kind_named(name: str) -> FigureKind:
    for kind in FIGURE_KINDS:
        if kind.name == name:
            return kind
    raise ValueError(f"unknown figure kind '{name}'")


def recognise(record: dict[str, Any], source: Path) -> FigureKind:
    for kind in FIGURE_KINDS:
        if kind.recognises(record):
            return kind
    expected = "; ".join(k.describe for k in FIGURE_KINDS)
    keys = ", ".join(sorted(record)) or "none"
    raise RecordError(f"{source}: not a record plot.py can draw (top-level fields: {keys}); "
                      f"expected one of: {expected}")


def draw_file(source: Path, out: Path | None = None, kind: str = "auto") -> list[Path]:
    """Draws the figure(s) of one JSON record; returns the PNGs written."""
    require_matplotlib()
    record = load_record(source)
    figure = recognise(record, source) if kind == "auto" else kind_named(kind)
    with plt.rc_context(STYLE):
        return figure.draw(record, source, out)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="plot.py", description=__doc__.split("\n\n")[0],
        epilog="Kinds: " + "; ".join(f"{k.name}: {k.describe}" for k in FIGURE_KINDS))
    parser.add_argument("records", nargs="*", type=Path, metavar="RECORD.json",
                        help="JSON written by tq niah/bench/sensitivity or scripts/report.py")
    parser.add_argument("-o", "--out", type=Path,
                        help="PNG to write (niah: directory of the heatmaps); default: next to "
                             "the record")
    parser.add_argument("--kind", default="auto",
                        choices=["auto"] + [k.name for k in FIGURE_KINDS],
                        help="figure to draw (default: recognised from the record's fields)")
    parser.add_argument("--check", action="store_true",
                        help="only check that matplotlib can be imported")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="do not list the PNGs written on stderr")
    args = parser.parse_args(argv)
    if not args.check and not args.records:
        parser.error("give at least one RECORD.json (or --check)")
    if args.out is not None and len(args.records) > 1:
        parser.error("--out names one output; give one record at a time with it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        require_matplotlib()
        if args.check:
            return 0
        for source in args.records:
            for png in draw_file(source, args.out, args.kind):
                if not args.quiet:
                    print(f"plot.py: wrote {png}", file=sys.stderr)
    except MissingDependency as error:
        print(f"plot.py: error: {error}", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY
    except RecordError as error:
        print(f"plot.py: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
