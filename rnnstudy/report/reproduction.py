"""The literature's reference results beside ours (rows of an experiment named after a reference id)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnstudy.names import COMPLETE
from rnnstudy.report import tables


@dataclass(frozen=True)
class Reference:
    """One published result and how to judge ours against it."""

    id: str
    model: str
    task: str
    T: str
    paper: str
    source: str
    #: "formula" (baseline closed form), "beats" (mean normalised loss < threshold),
    #: "baseline" (every seed >= threshold), "solved" (at least half the seeds solved),
    #: "decays" (median log10 decay per step below -0.01 both at init and at the end)
    expect: str
    threshold: float = math.nan


GRADFLOW_PAPER = "gradient vanishes with lag, at init and after 100 iterations"
SOURCES = {"A": "Arjovsky et al. 2016", "L": "Le et al. 2015", "TO": "Tallec & Ollivier 2018"}
REFERENCE = [
    Reference("memoryless-copy", "any, memoryless", "copy", "T", "CE = 10 ln8/(T+20)", SOURCES["A"], "formula"),
    Reference("memoryless-adding", "any, predict 1", "adding", "T", "MSE = 1/6 = 0.167", SOURCES["A"], "formula"),
    Reference(
        "lstm40-copy100",
        "LSTM 40, RMSprop 1e-3, clip 1",
        "copy",
        "100",
        "beats baseline after a plateau",
        SOURCES["A"],
        "beats",
        0.9,
    ),
    Reference("lstm40-copy200", "LSTM 40, RMSprop 1e-3", "copy", "200-500", "stuck at baseline", SOURCES["A"], "baseline", 0.9),
    Reference(
        "tanh80-copy200", "tanh RNN 80, RMSprop 1e-3", "copy", "200-500", "stuck at baseline", SOURCES["A"], "baseline", 0.9
    ),
    Reference(
        "lstm128-adding", "LSTM 128, RMSprop 1e-3", "adding", "100, 200, 400", "well below 0.167", SOURCES["A"], "beats", 0.2
    ),
    Reference("tanh128-adding", "tanh RNN 128, RMSprop", "adding", "100-750", "never beats 0.167", SOURCES["A"], "baseline", 0.9),
    Reference("irnn128-adding", "IRNN 128, RMSprop", "adding", "100-750", "never beats 0.167", SOURCES["A"], "baseline", 0.9),
    Reference("rnn-sgd-adding", "tanh RNN / IRNN, SGD, >1M iterations", "adding", "150 / 300", "solved", SOURCES["L"], "solved"),
    *(
        Reference(f"gradflow-{key}", f"{model}, RMSprop 1e-3", "adding", "100", GRADFLOW_PAPER, SOURCES["A"], "decays")
        for key, model in (("tanh128", "tanh RNN 128"), ("irnn128", "IRNN 128"), ("lstm128", "LSTM 128"))
    ),
    Reference("chrono-lstm128-copy", "chrono-initialised LSTM 128", "copy", "500, 2000", "solved", SOURCES["TO"], "solved"),
    Reference(
        "default-lstm128-copy", "default LSTM 128", "copy", "500, 2000", "stuck at baseline", SOURCES["TO"], "baseline", 0.9
    ),
]
GPU_COMMAND = "make sweep EXP=experiments/paper_reproduction.yaml  (GPU; or python benchmarks/gpu_reproduction.py)"


def judge(ref: Reference, d: pd.DataFrame) -> tuple[str, str]:
    """Our runs against one reference: ("agree" | "disagree", why), by the reference's ``expect`` rule."""
    losses = d["final_norm_loss"].dropna()
    budget = f"{int(d['budget'].max())} steps"
    if ref.expect == "beats":
        mean = losses.mean()
        return (
            ("agree", "")
            if mean < ref.threshold
            else ("disagree", f"mean {mean:.3f} x baseline is not below {ref.threshold} within {budget}")
        )
    if ref.expect == "baseline":
        low = losses.min()
        return ("agree", "") if low >= ref.threshold else ("disagree", f"a seed reached {low:.3f} x baseline within {budget}")
    if ref.expect == "decays":
        start, end = d["decay_init"].median(), d["decay_end"].median()
        if start < -0.01 and end < -0.01:
            return "agree", ""
        return "disagree", f"median log10 decay per step {start:+.4f} at init, {end:+.4f} after {budget}"
    frac = d["solved"].mean()
    return (
        ("agree", "")
        if frac >= 0.5
        else ("disagree", f"solved by {frac:.0%} of seeds within {budget} (the paper trained far longer)")
    )


def _row(ref: Reference, ours: str, verdict: str) -> dict[str, str]:
    return {
        "reference": ref.id,
        "model": ref.model,
        "task": ref.task,
        "T": ref.T,
        "paper": ref.paper,
        "ours": ours,
        "verdict": verdict,
        "source": ref.source,
    }


def _formula(ref: Reference, d: pd.DataFrame) -> tuple[str, str]:
    formula = (lambda T: 10 * math.log(8) / (T + 20)) if ref.task == "copy" else (lambda T: 1 / 6)
    ok = all(np.isclose(b, formula(t), rtol=1e-12) for b, t in zip(d["baseline"], d["T"]))
    return ("baseline used for every run equals the closed form", "agree") if ok else ("baseline differs", "disagree")


def _measured(ref: Reference, d: pd.DataFrame) -> tuple[str, str]:
    parts = []
    if ref.expect == "decays":
        parts.append(f"log10 g per step back: {d['decay_init'].median():+.4f} at init, {d['decay_end'].median():+.4f} at the end")
    for T, g in d.groupby("T"):
        m, s = g["final_norm_loss"].mean(), g["final_norm_loss"].std(ddof=0)
        setting = f"{g['cell'].iloc[0]} {int(g['hidden'].iloc[0])}, {g['optimizer'].iloc[0]} {g['lr'].iloc[0]:g}"
        parts.append(
            f"T={T}: {m:.3f} +- {s:.3f} x baseline, solved {g['solved'].mean():.0%} "
            f"({setting}; {len(g)} seeds, {int(g['budget'].max())} steps)"
        )
    device = ", ".join(sorted(set(map(str, d["device"]))))
    verdict, reason = judge(ref, d)
    return "; ".join(parts) + f" on {device}", verdict + (f": {reason}" if reason else "")


def frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per reference result the runs cover (formula rows: wherever the task was run)."""
    labels = runs["row"].fillna("").astype(str) if "row" in runs else pd.Series("", index=runs.index)
    covers_any = any(labels.str.startswith(ref.id).any() for ref in REFERENCE if ref.expect != "formula")
    rows = []
    for ref in REFERENCE:
        if ref.expect == "formula":
            d = runs[runs["task"] == ref.task]
            if not d.empty:
                rows.append(_row(ref, *_formula(ref, d)))
            continue
        d = runs[(labels.str.startswith(ref.id)) & (runs["status"] == COMPLETE)]
        if not d.empty:
            rows.append(_row(ref, *_measured(ref, d)))
        elif covers_any:
            rows.append(_row(ref, f"not run here: {GPU_COMMAND}", "-"))
    return pd.DataFrame(rows)


def page(table: pd.DataFrame, figure: str | None) -> str | None:
    """A stand-alone ``reproduction.md`` where more than two reference rows were run (else None); ``figure``: a PNG beside it."""
    if table.empty or (table["verdict"] != "-").sum() <= 2:
        return None
    intro = (
        "# Reproducing the literature\n\nGenerated by `rnnstudy report` from a real run. *ours*: final validation "
        "loss / memoryless baseline, mean +- sd over seeds, with the model, optimiser, seeds and budget we ran; "
        "where they differ from the paper's, the experiment file says why.\n\n"
    )
    shown = f"\nGradient norm against lag at initialisation and at the end of training:\n\n![gradient against lag]({figure})\n"
    return intro + tables.markdown(table) + "\n" + (shown if figure else "")
