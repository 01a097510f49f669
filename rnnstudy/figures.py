"""Figure primitives shared by W&B tracking and the reports: fixed cell colours, heatmaps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

CELL_COLOURS = {"rnn_tanh": "#d62728", "rnn_relu": "#ff7f0e", "lstm": "#1f77b4", "gru": "#2ca02c"}


def profile_heatmap(rows: pd.DataFrame, title: str, ax: plt.Axes | None = None) -> plt.Figure:
    """Training step x time step image of g_t on a log colour scale."""
    grid = rows.pivot_table(index="step", columns="t", values="norm")
    values = grid.to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    if positive.size:
        norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-12), vmax=positive.max())
        image = ax.imshow(
            np.where(values > 0, values, np.nan),
            aspect="auto",
            origin="lower",
            norm=norm,
            cmap="viridis",
            extent=(grid.columns.min() - 0.5, grid.columns.max() + 0.5, -0.5, len(grid) - 0.5),
            interpolation="nearest",
        )
        ax.figure.colorbar(image, ax=ax, label="g_t (log scale)")
        ticks = np.linspace(0, len(grid) - 1, min(len(grid), 6)).round().astype(int)
        ax.set_yticks(ticks, [str(grid.index[i]) for i in ticks])
    ax.grid(False)
    ax.set_xlabel("time step t")
    ax.set_ylabel("training step")
    ax.set_title(title)
    return ax.figure
