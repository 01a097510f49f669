"""The gradient-flow heatmap of one run (training step x lag, log10 g_t): drawn by the W&B sink at a run's end and by
the report's heatmap figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

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
