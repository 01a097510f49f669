"""Figure style and primitives shared by W&B tracking and the reports: the theme, colours by cell, gradient heatmaps, saving."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from rnnstudy.cells import CELL_COLOURS, CELL_ORDER  # noqa: E402
from rnnstudy.names import Censored  # noqa: E402

#: The colour scale spans at most this many decades below the largest value.
DECADES = 12


def log_scale(values: np.ndarray) -> Normalize | None:
    """One colour scale over log10 of the given gradient norms (shared by every panel drawn with it)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return None
    top = float(np.log10(positive.max()))
    return Normalize(vmin=max(float(np.log10(positive.min())), top - DECADES), vmax=top)


def profile_heatmap(rows: pd.DataFrame, title: str, ax: plt.Axes | None = None, norm: Normalize | None = None) -> plt.Figure:
    """Training step x lag (steps back from the end of the sequence) image of log10 g_t."""
    grid = rows.pivot_table(index="step", columns="lag", values="norm")
    values = grid.to_numpy(dtype=float)
    norm = norm or log_scale(values)
    if ax is None:
        # A fixed layout: a sweep draws these for every trial, and constrained layout costs it three times the drawing.
        fig, ax = plt.subplots(figsize=(7, 3.5))
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.9)
    if norm is not None and (np.isfinite(values) & (values > 0)).any():
        with np.errstate(divide="ignore", invalid="ignore"):
            decades = np.log10(np.where(values > 0, values, np.nan))
        image = ax.imshow(
            decades,
            aspect="auto",
            origin="lower",
            norm=norm,
            cmap="viridis",
            extent=(grid.columns.min() - 0.5, grid.columns.max() + 0.5, -0.5, len(grid) - 0.5),
            interpolation="nearest",
        )
        ax.figure.colorbar(image, ax=ax, label="log10 g_t")
        ticks = np.linspace(0, len(grid) - 1, min(len(grid), 6)).round().astype(int)
        ax.set_yticks(ticks, [str(grid.index[i]) for i in ticks])
    ax.grid(False)
    ax.set_xlabel("lag: steps back from the end of the sequence")
    ax.set_ylabel("training step")
    ax.set_title(title)
    return ax.figure


def apply() -> None:
    """Seaborn theme used by every figure."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def cells_present(cells: list[str] | set[str]) -> list[str]:
    """Cell types in their fixed order."""
    return [c for c in CELL_ORDER if c in set(cells)]


def by_cell(data: pd.DataFrame) -> dict:
    """Seaborn keyword arguments that colour by cell type, in the fixed order and colours."""
    return {"hue": "cell", "hue_order": cells_present(data["cell"].unique()), "palette": CELL_COLOURS}


def cell_lines(data: pd.DataFrame, x: str, y: str, **facets: object) -> sns.FacetGrid:
    """Faceted line plot coloured by cell type; panels keep their own y range."""
    facets.setdefault("facet_kws", {"sharey": False})
    return sns.relplot(data=data, kind="line", x=x, y=y, **by_cell(data), **facets)


def save(fig: plt.Figure, path: Path) -> Path:
    """Write a PNG and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plain_log_ticks(axis: plt.Axes) -> None:
    """Ticks of a log axis at 1, 2, 5 x 10^k written as plain numbers (20, 50, 100), not 2 x 10^1."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def t50_points(ax: plt.Axes, x: str, memory: pd.DataFrame, colour: str, legend: bool = True) -> None:
    """Memory-length lines at ``x`` as their text says them: T50 with its 95% interval; a quasi-separated line as the
    bracket between its design points (hollow, no point claimed inside); bounds as triangles at the bound (hollow
    where weak); a legend entry only for what is drawn."""
    estimated = memory[(memory["censored"] == Censored.NONE) & ~memory["separated"].astype(bool)]
    if not estimated.empty:
        ax.errorbar(estimated[x], estimated["T50"], yerr=[estimated["T50"] - estimated["low"],
                    estimated["high"] - estimated["T50"]], fmt="o", color=colour, capsize=3,
                    label="T50 [95% interval]" if legend else None)  # fmt: skip
    bracketed = memory[(memory["censored"] == Censored.NONE) & memory["separated"].astype(bool)]
    if not bracketed.empty:
        low, high = bracketed["bracket_low"], bracketed["bracket_high"]
        middle = np.sqrt(low * high)
        ax.errorbar(bracketed[x], middle, yerr=[middle - low, high - middle], fmt="s", mfc="none", color=colour,
                    capsize=5, elinewidth=2.5, label="between two T tried (quasi-separated)" if legend else None)  # fmt: skip
    weak = memory["weak"].astype(bool) if "weak" in memory else pd.Series(False, index=memory.index)
    for sign, marker, text in ((Censored.ABOVE, "^", "bound: T50 above"), (Censored.BELOW, "v", "bound: T50 below")):
        bound = memory[memory["censored"] == sign]
        if not bound.empty:
            ax.scatter(bound[x], bound["bound"], marker=marker, s=60, color=colour, label=text if legend else None,
                       facecolors=[colour if not w else "none" for w in weak[bound.index]])  # fmt: skip


#: Lines of one panel at one x are drawn side by side, this far apart on a log axis (a factor), so none hides another.
DODGE = 1.04


def dodge(i: int, n: int) -> float:
    """The factor the i-th of n lines is shifted by on a log axis, centred on the true value."""
    return DODGE ** (i - (n - 1) / 2)


def shades(cell: str, n: int) -> list:
    """n colours for a cell's lines, light to its full colour (a cell stays apart from the others, its values in order)."""
    base = CELL_COLOURS[cell]
    return sns.light_palette(base, n_colors=n + 1)[1:] if n > 1 else [base]
