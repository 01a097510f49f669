"""Shared figure style: one fixed colour per cell type, readable labels, saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from rnnstudy.figures import CELL_COLOURS

CELL_ORDER = list(CELL_COLOURS)
CELL_LABELS = {"rnn_tanh": "tanh RNN", "rnn_relu": "ReLU RNN", "lstm": "LSTM", "gru": "GRU"}


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
