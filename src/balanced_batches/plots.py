"""PNG figures of the report: region heat maps, batch counts and input/output comparisons.

Every function takes plain arrays, draws one figure in the CMS style of mplhep and writes
it as PNG. Figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas:
pyplot's global figure registry and interactive backends are never involved, so nothing
needs a display, nothing stays open after a function returns, and importing this module
does not change the backend of a notebook that imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.style
import mplhep  # type: ignore[import-untyped]
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from .regions import bin_label

log = logging.getLogger(__name__)

DPI = 80
EMPTY_COLOUR = "#e42536"
SPARSE_COLOUR = "#f89c20"
INPUT_COLOUR = "#5790fc"
OUTPUT_COLOUR = "#e42536"
# greys that stay distinguishable from the blank background, even for a count of one
MUTED_COLOURS = ListedColormap(matplotlib.colormaps["Greys"](np.linspace(0.3, 0.9, 256)))
MAX_ANNOTATED_CELLS = 400  # larger grids are drawn without the number in every cell


# -- axes of the region grid ---------------------------------------------------------------------


def display_edges(edges: Sequence[float]) -> np.ndarray:
    """Edges of the bins as drawn: the overflow bin (x >= last edge) gets the previous bin's width.

    `edges` are the lower edges of the bins, the last one starting the overflow bin, as in
    `RegionSpace.pt_edges`; the result has one more value.
    """
    lower = np.asarray(edges, dtype=np.float64)
    width = lower[-1] - lower[-2] if len(lower) > 1 else max(abs(lower[-1]), 1.0)
    return np.append(lower, lower[-1] + width)


def overflow_label(edges: Sequence[float]) -> str:
    """`100+`: the label of the overflow bin."""
    return bin_label(edges, len(edges) - 1)


def clip_to_display(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Values with those in the overflow bin moved inside its drawn width (for filling)."""
    drawn = display_edges(edges)
    clipped: np.ndarray = np.minimum(values, 0.5 * (drawn[-2] + drawn[-1]))
    return clipped


def _edge_axis(ax: Axes, edges: Sequence[float], axis: str, title: str) -> None:
    """Ticks at the bin edges; the overflow bin labelled `100+` at its centre."""
    drawn = display_edges(edges)
    ticks = [*drawn[:-2], 0.5 * (drawn[-2] + drawn[-1])]
    labels = [bin_label(edges, index) for index in range(len(edges))]
    if axis == "x":
        ax.set_xlim(drawn[0], drawn[-1])
        ax.set_xticks(ticks, labels, rotation=90 if len(ticks) > 10 else 0)
        ax.set_xlabel(title)
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_ylim(drawn[0], drawn[-1])
        ax.set_yticks(ticks, labels)
        ax.set_ylabel(title)
        ax.yaxis.set_minor_locator(NullLocator())


# -- figure handling -----------------------------------------------------------------------------


@contextmanager
def _figure(path: Path, width: float, height: float) -> Iterator[Figure]:
    """A figure in the CMS style, written to `path` when the block ends."""
    with matplotlib.style.context(mplhep.style.CMS):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        yield figure
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI, format="png")
    log.debug("wrote %s", path)


def compact(value: float) -> str:
    """`987`, `12.3k`, `4.5M`: a count short enough for a heat-map cell."""
    if value < 999.5:
        return f"{value:.0f}"
    for power, suffix in ((3, "k"), (6, "M"), (9, "G"), (12, "T")):
        scaled = float(f"{value / 10**power:.3g}")
        if scaled < 1000:
            return f"{scaled:g}{suffix}"
    return f"{value:.2g}"


def _short(value: float) -> str:
    """`0.05`, `1.2`, `12`, `340`: a ratio short enough for a heat-map cell."""
    return f"{value:.2g}" if value < 100 else f"{value:.0f}"


def _tick_text(value: float, _position: float | None = None) -> str:
    return compact(value) if value >= 1 else f"{value:g}"


def _cell_text_colour(value: float, empty: bool, rgba: tuple[float, float, float, float]) -> str:
    """Red for empty regions, grey for other zeros, else what reads on the cell's colour."""
    if empty:
        return EMPTY_COLOUR
    if value <= 0:
        return "#999999"
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


# -- heat maps -----------------------------------------------------------------------------------


def region_heatmap(
    path: Path,
    values: np.ndarray,
    pt_edges: Sequence[float],
    abseta_edges: Sequence[float],
    *,
    title: str,
    colour_label: str,
    empty: np.ndarray | None = None,
    sparse: np.ndarray | None = None,
    value_format: str = "count",
    empty_label: str = "empty (active)",
    sparse_label: str = "sparse",
    muted: bool = False,
) -> Path:
    """A pT x |eta| heat map with a logarithmic colour scale; NaN and zero cells stay blank.

    `values`, `empty` and `sparse` are (|eta| bins, pT bins). Empty cells are hatched with
    red crosses, sparse cells framed in orange; every cell carries its value unless the
    grid is too large to read. `muted` draws in greys (regions no plan uses).
    """
    grid = np.asarray(values, dtype=np.float64)
    empty = np.zeros(grid.shape, dtype=bool) if empty is None else empty
    sparse = np.zeros(grid.shape, dtype=bool) if sparse is None else sparse
    x_edges, y_edges = display_edges(pt_edges), display_edges(abseta_edges)
    shown = np.where(np.isfinite(grid) & (grid > 0), grid, np.nan)
    positive = shown[np.isfinite(shown)]
    if positive.size:
        low, high = float(positive.min()), float(positive.max())
        norm: Normalize = LogNorm(vmin=low, vmax=high if high > low else low * 10)
    else:
        norm = LogNorm(vmin=1, vmax=10)
    with _figure(path, 12, 7) as figure:
        ax = figure.add_axes((0.09, 0.2, 0.76, 0.68))
        colour_axes = figure.add_axes((0.87, 0.2, 0.025, 0.68))
        cmap = (MUTED_COLOURS if muted else matplotlib.colormaps["viridis"]).with_extremes(
            bad="#f4f4f4"
        )
        mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(shown), norm=norm, cmap=cmap)
        colour_bar = figure.colorbar(mesh, cax=colour_axes, label=colour_label)
        colour_bar.ax.yaxis.set_major_formatter(FuncFormatter(_tick_text))
        few_decades = norm.vmax is not None and norm.vmin and norm.vmax / norm.vmin < 30
        colour_bar.ax.yaxis.set_minor_formatter(
            FuncFormatter(_tick_text) if few_decades else NullFormatter()
        )
        colour_bar.ax.tick_params(labelsize=15, which="both")
        _edge_axis(ax, pt_edges, "x", r"$p_T$ [GeV]")
        _edge_axis(ax, abseta_edges, "y", r"$|\eta|$")
        ax.tick_params(labelsize=15)
        ax.set_title(title, fontsize=20, loc="left")
        annotate = grid.size <= MAX_ANNOTATED_CELLS
        for row, column in np.ndindex(grid.shape):
            x0, x1 = float(x_edges[column]), float(x_edges[column + 1])
            y0, y1 = float(y_edges[row]), float(y_edges[row + 1])
            if empty[row, column]:
                ax.add_patch(
                    Rectangle(
                        (x0, y0),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        hatch="xx",
                        edgecolor=EMPTY_COLOUR,
                        linewidth=0,
                    )
                )
            elif sparse[row, column]:
                dx, dy = 0.06 * (x1 - x0), 0.06 * (y1 - y0)
                ax.add_patch(
                    Rectangle(
                        (x0 + dx, y0 + dy),
                        x1 - x0 - 2 * dx,
                        y1 - y0 - 2 * dy,
                        fill=False,
                        edgecolor=SPARSE_COLOUR,
                        linewidth=3,
                    )
                )
            value = float(grid[row, column])
            if not annotate or not np.isfinite(value):
                continue
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                compact(value) if value_format == "count" else _short(value),
                ha="center",
                va="center",
                fontsize=13,
                color=_cell_text_colour(value, bool(empty[row, column]), cmap(norm(value))),
                fontweight="bold" if empty[row, column] else "normal",
            )
        handles = []
        if empty.any():
            handles.append(Patch(fill=False, hatch="xx", edgecolor=EMPTY_COLOUR, label=empty_label))
        if sparse.any():
            handles.append(
                Patch(fill=False, edgecolor=SPARSE_COLOUR, linewidth=3, label=sparse_label)
            )
        if handles:
            figure.legend(
                handles=handles, loc="upper right", fontsize=14, ncols=len(handles), frameon=False
            )
    return path


# -- planning ------------------------------------------------------------------------------------


def batches_by_strategy(
    path: Path, labels: Sequence[str], batches: Sequence[int], planned: int | None, per_batch: int
) -> Path:
    """Bars: the number of batches each planning rule gives; the plan's as a line."""
    with _figure(path, 12, 7) as figure:
        ax = figure.add_axes((0.11, 0.2, 0.85, 0.7))
        positions = np.arange(len(labels))
        heights = np.asarray(batches, dtype=np.float64)
        ax.bar(positions, np.where(heights > 0, heights, np.nan), color=INPUT_COLOUR, width=0.7)
        for x, value in enumerate(batches):
            ax.text(
                x,
                max(value, 1),
                compact(value) if value else "none",
                ha="center",
                va="bottom",
                fontsize=14,
            )
        if planned is not None:
            ax.axhline(planned, color=OUTPUT_COLOUR, linestyle="--", linewidth=2)
            ax.text(
                len(labels) - 0.5,
                planned,
                f"plan: {planned}",
                color=OUTPUT_COLOUR,
                ha="right",
                va="bottom",
                fontsize=14,
            )
        ax.set_yscale("log")
        top = max([*batches, planned or 0, 1])
        ax.set_ylim(0.8, top * 3)
        ax.set_xticks(positions, list(labels), fontsize=15)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="y", labelsize=15)
        ax.set_ylabel("batches", fontsize=18)
        ax.set_title(
            f"Batches of N = {per_batch} per region by planning rule", fontsize=20, loc="left"
        )
    return path


# -- input and output ----------------------------------------------------------------------------


def _fractions(values: np.ndarray) -> np.ndarray:
    total = float(np.sum(values))
    return np.asarray(values, dtype=np.float64) / total if total > 0 else np.zeros(len(values))


def _grid(count: int) -> tuple[int, int]:
    columns = 1 if count == 1 else 2
    return -(-count // columns), columns


def binned_comparison(
    path: Path,
    edges: Sequence[float],
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    panel_titles: Sequence[str],
    axis_title: str,
    title: str,
) -> Path:
    """Per panel (type), the fraction of candidates per region bin, input vs output overlaid."""
    rows, columns = _grid(len(panel_titles))
    drawn = display_edges(edges)
    with _figure(path, 8 * columns, 5.5 * rows + 1) as figure:
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, panel, input_values, output_values in zip(
            axes, panel_titles, inputs, outputs, strict=False
        ):
            mplhep.histplot(
                _fractions(input_values), drawn, ax=ax, label="input", color=INPUT_COLOUR, lw=2
            )
            mplhep.histplot(
                _fractions(output_values),
                drawn,
                ax=ax,
                label="output",
                color=OUTPUT_COLOUR,
                lw=2,
                ls="--",
            )
            _edge_axis(ax, edges, "x", axis_title)
            ax.set_ylim(0, None)
            ax.tick_params(labelsize=13)
            ax.set_ylabel("fraction per bin", fontsize=16)
            ax.xaxis.label.set_size(16)
            ax.set_title(
                f"{panel}: {int(np.sum(input_values))} in, {int(np.sum(output_values))} out",
                fontsize=16,
                loc="left",
            )
            ax.legend(fontsize=14)
        for ax in axes[len(panel_titles) :]:
            ax.set_axis_off()
        figure.suptitle(title, fontsize=20, x=0.02, ha="left")
        figure.tight_layout()
    return path


def category_comparison(
    path: Path,
    names: Sequence[str],
    inputs: np.ndarray,
    outputs: np.ndarray,
    axis_title: str,
    title: str,
) -> Path:
    """Fraction of candidates per category (type, process key), input vs output."""
    longest = max((len(name) for name in names), default=1)
    bottom = min(0.12 + 0.012 * longest, 0.5) if len(names) > 4 else 0.14
    with _figure(path, max(10, 0.7 * len(names) + 4), 8) as figure:
        ax = figure.add_axes((0.1, bottom, 0.86, 0.86 - bottom))
        positions = np.arange(len(names) + 1)
        mplhep.histplot(_fractions(inputs), positions, ax=ax, label="input", color=INPUT_COLOUR)
        mplhep.histplot(
            _fractions(outputs), positions, ax=ax, label="output", color=OUTPUT_COLOUR, ls="--"
        )
        ax.set_xticks(
            positions[:-1] + 0.5, list(names), rotation=90 if len(names) > 4 else 0, fontsize=13
        )
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(0, len(names))
        ax.set_ylim(0, None)
        ax.tick_params(axis="y", labelsize=14)
        ax.set_xlabel(axis_title, fontsize=16)
        ax.set_ylabel("fraction", fontsize=16)
        ax.set_title(title, fontsize=20, loc="left")
        ax.legend(fontsize=14)
    return path


def per_batch_counts(
    path: Path,
    minimum: np.ndarray,
    mean: np.ndarray,
    maximum: np.ndarray,
    per_batch: int,
    batches: int,
) -> Path:
    """Smallest, mean and largest count of every stream over the batches read, with N."""
    streams = np.arange(len(minimum))
    with _figure(path, 12, 7) as figure:
        ax = figure.add_axes((0.1, 0.14, 0.86, 0.76))
        ax.fill_between(
            streams, minimum, maximum, step="mid", color=INPUT_COLOUR, alpha=0.3, label="min-max"
        )
        ax.step(streams, minimum, where="mid", color=INPUT_COLOUR, lw=1.5)
        ax.step(streams, maximum, where="mid", color=INPUT_COLOUR, lw=1.5)
        ax.plot(streams, mean, ".", color="black", markersize=4, label="mean")
        ax.axhline(per_batch, color=OUTPUT_COLOUR, ls="--", lw=2, label=f"N = {per_batch}")
        ax.set_xlim(-0.5, max(len(streams) - 0.5, 0.5))
        ax.set_ylim(0, max(float(np.max(maximum, initial=0)), per_batch) * 1.3 + 1)
        ax.tick_params(labelsize=14)
        ax.set_xlabel("stream (process key, region) index", fontsize=16)
        ax.set_ylabel("candidates per batch", fontsize=16)
        ax.set_title(
            f"Candidates of each stream per batch, over {batches} batches", fontsize=20, loc="left"
        )
        ax.legend(fontsize=14, loc="upper right", ncols=3)
    return path
