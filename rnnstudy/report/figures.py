"""Figure style and primitives the reports share: the theme, colours by cell, T50 as its text says it, saving."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from rnnstudy.analysis.memory import MIN_SEEDS  # noqa: E402
from rnnstudy.model.cells import CELL_COLOURS, CELL_LABELS, CELL_ORDER  # noqa: E402
from rnnstudy.names import Censored  # noqa: E402


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
    few = estimated["seeds"] < MIN_SEEDS if "seeds" in estimated else pd.Series(False, index=estimated.index)
    for part, style, text in ((estimated[~few], {}, "T50 [95% interval]"),
                              (estimated[few], {"mfc": "none", "ls": "none", "alpha": 0.5},
                               f"exploratory: fewer than {MIN_SEEDS} seeds")):  # fmt: skip
        if not part.empty:
            bars = ax.errorbar(part[x], part["T50"], yerr=[part["T50"] - part["low"], part["high"] - part["T50"]], fmt="o",
                               color=colour, capsize=3, label=text if legend else None, **style)  # fmt: skip
            if style:
                bars[2][0].set_linestyle(":")
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


def caption(fig: plt.Figure, text: str, fontsize: float = 9) -> None:
    """A figure's title wrapped to the figure's width (each ``\n``-separated part on its own lines), above the panels, so
    a long caption never widens the figure beyond its panels."""
    width = max(40, int(fig.get_figwidth() * 11))  # characters that fit the width at this font size
    text = "\n".join(textwrap.fill(part, width) for part in text.split("\n"))
    fig.suptitle(text, y=1.01, va="bottom", fontsize=fontsize)


def budget_and_lr(memory: pd.DataFrame) -> str:
    """What every memory length is measured at, for a figure's title: ``at 1500 training steps (lr: LSTM 0.01; ...)``."""
    if memory.empty:
        return ""
    budgets = ", ".join(str(int(b)) for b in sorted(memory["budget"].unique()))
    lrs = "; ".join(f"{CELL_LABELS[c]} {', '.join(f'{v:g}' for v in sorted({x for xs in d['lr'] for x in xs}))}"
                    for c, d in memory.groupby("cell", sort=False))  # fmt: skip
    return f"at {budgets} training steps (lr: {lrs})"


#: Lines of one panel at one x are drawn side by side, this far apart on a log axis (a factor), so none hides another.
DODGE = 1.04


def dodge(i: int, n: int) -> float:
    """The factor the i-th of n lines is shifted by on a log axis, centred on the true value."""
    return DODGE ** (i - (n - 1) / 2)


def shades(cell: str, n: int) -> list:
    """n colours for a cell's lines, light to its full colour (a cell stays apart from the others, its values in order)."""
    base = CELL_COLOURS[cell]
    return sns.light_palette(base, n_colors=n + 1)[1:] if n > 1 else [base]
