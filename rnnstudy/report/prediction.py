"""Does an initialisation's look at step 0 predict whether training will remember? Scored per run, within each cell.

Every run of the given studies (calibration runs left out: their learning rate varies) is one initialisation
with a censored outcome: solved at its T within the budget or not, and the steps it took (censored at the
budget when it did not solve). Each zero-parameter feature of the run's exact initial network is scored on its
own, within each cell, by the ROC AUC of solved-at-T and by Harrell's concordance index of steps-to-solve, with
95% bootstrap intervals over runs; ``-log T`` alone is scored beside them, since within a cell the T a run was
tried at predicts most of its outcome. A logistic combination is fitted on seeds 0-2 and scored on the others
(held-out beside in-sample). The init-time pre-screen (``study.prescreen``) is scored as a paired
counterfactual: it is a deterministic function of a point's config and first seed, so applied to runs trained
without it, it says exactly what it would have pruned.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rnnstudy import figures
from rnnstudy.cells import CELL_LABELS, CELL_ORDER, CELLS
from rnnstudy.config import RunConfig
from rnnstudy.diagnostics import diagnose, init_features
from rnnstudy.names import SOLVED_FRACTION
from rnnstudy.report import frames, tables
from rnnstudy.store import Results, read_info

BOOTSTRAP = 1000
#: The features, each oriented so that higher means more memory predicted, with what they are.
FEATURES = {
    "grad_ratio": "log10 answer-loss gradient at the informative steps over at the answer, step 0 (LSTM: c)",
    "timescale_reach": "fraction of gate timescales 1/(1 - keep gate) reaching the lag T needs",
    "neg_lyapunov": "-lambda_1, over >= 200 driven steps (unconverged: left out)",
    "neg_log_T": "-log T alone (the reference: what the T a run was tried at predicts)",
}
#: The seeds a combination is fitted on; the others score it.
FIT_SEEDS = (0, 1, 2)
#: Pre-screen thresholds scored (a point is pruned when predicted memory < threshold x T).
THRESHOLDS = (0.05, 0.1, 0.25, 0.5, 1.0)
#: The pre-screen's goals: at most this false-negative rate, at least this share of training steps saved.
MAX_FALSE_NEGATIVES, MIN_SAVED = 0.05, 0.30


def run_config(folder: str | Path) -> RunConfig:
    """The exact config a run trained with, from its run.json."""
    return RunConfig.model_validate(read_info(Path(folder))["config"])


def auc(solved: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for solved (NaN when only one class is present)."""
    return float(roc_auc_score(solved, score)) if 0 < solved.sum() < len(solved) else math.nan


def concordance(time: np.ndarray, solved: np.ndarray, score: np.ndarray) -> float:
    """Harrell's C for right-censored times: of the pairs where one run solved strictly sooner, how often it scores higher.

    A pair (i, j) is comparable when i solved and solved before j's time (j solved later or was censored later);
    a tie in score counts one half. NaN without a comparable pair.
    """
    sooner = (time[:, None] < time[None, :]) & solved[:, None].astype(bool)
    higher = (score[:, None] > score[None, :]).astype(float) + 0.5 * (score[:, None] == score[None, :])
    pairs = sooner.sum()
    return float((higher * sooner).sum() / pairs) if pairs else math.nan


def bootstrap(stat: Callable[..., float], *columns: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of ``stat(*columns)`` over resamples of the runs (resamples where it is undefined skipped)."""
    rng, n = np.random.default_rng(seed), len(columns[0])
    draws = [stat(*(c[i] for c in columns)) for i in (rng.integers(0, n, n) for _ in range(BOOTSTRAP))]
    draws = [d for d in draws if math.isfinite(d)]
    return tuple(np.percentile(draws, [2.5, 97.5])) if len(draws) > BOOTSTRAP // 2 else (math.nan, math.nan)


def features(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per studied run: its outcome (solved, steps censored at the budget) and every feature."""
    done = frames.complete(frames.studied(runs))
    probe = res.metrics[(res.metrics["split"] == "probe") & (res.metrics["step"] == 0)]
    ratios = probe.pivot_table(index="run_id", columns="metric", values="value")
    first = done.groupby("study")["seed"].min()
    rows = []
    for i, (_, run) in enumerate(done.iterrows(), 1):
        cfg = run_config(run["path"])
        state = CELLS[run["cell"]].state[-1]  # the memory state: c where the cell keeps one, else h
        ratio = ratios.get(frames.probe_metric("informative", state=state), pd.Series(dtype=float)).get(run["run_id"])
        init = init_features(cfg)
        rows.append(
            {
                **run[["run_id", "study", "cell", "task", "T", "family", "setting", "seed", "final_norm_loss"]].to_dict(),
                "solved": pd.notna(run["steps_to_solve"]),
                "time": run["steps_to_solve"] if pd.notna(run["steps_to_solve"]) else run["budget"],
                "steps": run["steps"],
                "grad_ratio": math.log10(ratio) if ratio and ratio > 0 else math.nan,
                "timescale_reach": init["timescale_reach"],
                "neg_lyapunov": -init["lyapunov_top"] if init["lyapunov_converged"] else math.nan,
                "lyapunov_converged": bool(init["lyapunov_converged"]),
                "neg_log_T": -math.log(run["T"]),
                # What the pre-screen reads: only a point's first seed is looked at (worker.PreScreen).
                "predicted_memory": diagnose(cfg).predicted_memory if run["seed"] == first[run["study"]] else math.nan,
            }
        )
        if i % 50 == 0 or i == len(done):
            print(f"  features {i}/{len(done)} runs", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell and feature: AUC of solved and concordance of steps-to-solve, each with its bootstrap interval."""
    out = []
    for (task, cell), part in rows.groupby(["task", "cell"]):
        for feature in FEATURES:
            d = part.dropna(subset=[feature])
            solved, time, score = d["solved"].to_numpy(), d["time"].to_numpy(float), d[feature].to_numpy(float)
            if len(d) < 10 or not solved.any():
                continue  # nothing to rank (the report names these cells)
            a = auc(solved, score)
            c = concordance(time, solved, score)
            a_lo, a_hi = bootstrap(auc, solved, score)
            c_lo, c_hi = bootstrap(concordance, time, solved, score)
            out.append(
                {
                    "task": task,
                    "cell": cell,
                    "feature": feature,
                    "runs": len(d),
                    "solved": int(solved.sum()),
                    "left out": len(part) - len(d),
                    "AUC": a,
                    "AUC 95% CI": f"[{a_lo:.2f}, {a_hi:.2f}]",
                    "concordance": c,
                    "C 95% CI": f"[{c_lo:.2f}, {c_hi:.2f}]",
                }
            )
    return pd.DataFrame(out)


def held_out(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task x cell: logistic models fitted on seeds 0-2 and scored on the rest (AUC, concordance), beside in-sample.

    Three models: T alone, the init features alone, and both; whether the init features add anything to what the
    T a run was tried at already says is the held-out difference between the first and the third.
    """
    out = []
    for (task, cell), part in rows.groupby(["task", "cell"]):
        init = [f for f in FEATURES if f != "neg_log_T" and part[f].notna().all()]
        fit, test = part[part["seed"].isin(FIT_SEEDS)], part[~part["seed"].isin(FIT_SEEDS)]
        if fit["solved"].nunique() < 2 or test.empty:
            continue
        for name, used in (("T alone", ["neg_log_T"]), ("init features", init), ("T + init features", ["neg_log_T", *init])):
            if not used:
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression()).fit(fit[used], fit["solved"])
            p_fit, p_test = model.predict_proba(fit[used])[:, 1], model.predict_proba(test[used])[:, 1]
            out.append(
                {
                    "task": task,
                    "cell": cell,
                    "model": name,
                    "features": ", ".join(used),
                    "in-sample AUC": auc(fit["solved"].to_numpy(), p_fit),
                    "held-out AUC": auc(test["solved"].to_numpy(), p_test),
                    "held-out concordance": concordance(test["time"].to_numpy(float), test["solved"].to_numpy(), p_test),
                    "held-out runs": len(test),
                }
            )
    return pd.DataFrame(out)


def prescreen_points(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per point (study): its T, verdict, steps trained, and the first seed's predicted memory length."""
    points = rows.groupby("study").agg(
        cell=("cell", "first"),
        task=("task", "first"),
        T=("T", "first"),
        setting=("setting", "first"),
        family=("family", "first"),
        solved_fraction=("solved", "mean"),
        mean_loss=("final_norm_loss", "mean"),
        steps=("steps", "sum"),
        predicted_memory=("predicted_memory", "max"),
    )
    return points.assign(solved=points["solved_fraction"] >= SOLVED_FRACTION).reset_index()


def counterfactual(points: pd.DataFrame, threshold: float) -> dict[str, object]:
    """What the pre-screen at ``threshold`` would have pruned among these points, and what that costs."""
    pruned = points["predicted_memory"] < threshold * points["T"]
    solved = points["solved"]
    lost = 0
    for _, group in points.groupby(["cell", "task", "T"]):
        if len(group) > 1:
            best = group.sort_values(["solved_fraction", "mean_loss"], ascending=[False, True]).index[0]
            lost += bool(pruned[best])
    return {
        "threshold": threshold,
        "points pruned": f"{int(pruned.sum())}/{len(points)}",
        "training steps saved": points.loc[pruned, "steps"].sum() / max(1, points["steps"].sum()),
        "false-negative rate": (pruned & solved).sum() / solved.sum() if solved.any() else math.nan,
        "best setting lost at a (cell, T)": lost,
    }


def choose_threshold(points: pd.DataFrame) -> tuple[float | None, pd.DataFrame]:
    """The largest threshold that, on the smaller-T half of the points, loses no best setting and stays within the FN goal.

    Returns it and its counterfactual on the other half (held out); None when no threshold qualifies.
    """
    small = points["T"] <= points["T"].median()
    ok = [
        t
        for t in THRESHOLDS
        if (c := counterfactual(points[small], t))["best setting lost at a (cell, T)"] == 0
        and not c["false-negative rate"] > MAX_FALSE_NEGATIVES
    ]
    chosen = max(ok) if ok else None
    rows = [
        {"points": "chosen on: T <= median", **counterfactual(points[small], chosen)},
        {"points": "held out: T > median", **counterfactual(points[~small], chosen)},
    ]
    return chosen, pd.DataFrame(rows) if chosen is not None else pd.DataFrame()


def draw(rows: pd.DataFrame, out: Path) -> Path | None:
    """Per cell: the step-0 gradient ratio against the steps a run took to solve (unsolved: hollow, at the budget).

    Only tasks where some run solved: the others have nothing to show.
    """
    data = rows.dropna(subset=["grad_ratio"])
    data = data[data.groupby("task")["solved"].transform("any")]
    if data.empty:
        return None
    cells = [c for c in CELL_ORDER if c in set(data["cell"])]
    fig, axes = plt.subplots(1, len(cells), figsize=(3.4 * len(cells), 3.4), layout="constrained", squeeze=False, sharey=True)
    norm = LogNorm(data["T"].min(), max(data["T"].max(), 2 * data["T"].min()))  # one T still gets a colour scale
    for ax, cell in zip(axes[0], cells):
        d = data[data["cell"] == cell]
        for solved in (True, False):
            part = d[d["solved"] == solved]
            colours = plt.cm.viridis(norm(part["T"].to_numpy(float)))
            ax.scatter(part["grad_ratio"], part["time"].clip(lower=1), s=22, facecolors=colours if solved else "none",
                       edgecolors=colours, label="solved" if solved else "not solved (at the budget)")  # fmt: skip
        ax.set(yscale="log", title=CELL_LABELS.get(cell, cell), xlabel="log10 gradient ratio at step 0")
    axes[0][0].set_ylabel("steps to solve")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes[0][-1], label="T")
    fig.suptitle("Init-time gradient ratio against training, per run")
    return figures.save(fig, out)


def build(res: Results, out: Path) -> pd.DataFrame:
    """Write the per-run scores, the held-out combination, the pre-screen counterfactual and the figure under ``out``."""
    figures.apply()
    rows = features(res, frames.run_table(res))
    if rows.empty:
        raise ValueError("no studied, complete runs to score")
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "run_features.csv", index=False)
    scored, combined = scores(rows), held_out(rows)
    points = prescreen_points(rows)
    sweep = pd.DataFrame([counterfactual(points, t) for t in THRESHOLDS])
    chosen, check = choose_threshold(points)
    scored.to_csv(out / "scores.csv", index=False)
    combined.to_csv(out / "held_out.csv", index=False)
    sweep.to_csv(out / "prescreen_counterfactual.csv", index=False)
    draw(rows, out / "predicted_vs_measured.png")
    _write_report(out, rows, scored, combined, sweep, chosen, check)
    return scored


def _write_report(
    out: Path,
    rows: pd.DataFrame,
    scored: pd.DataFrame,
    combined: pd.DataFrame,
    sweep: pd.DataFrame,
    chosen: float | None,
    check: pd.DataFrame,
) -> None:
    """report.md: what was scored, each feature per cell, the held-out combination, the pre-screen counterfactual."""
    features_md = "\n".join(f"- `{k}`: {v}" for k, v in FEATURES.items())
    unconverged = int((~rows["lyapunov_converged"]).sum())
    none_solved = sorted(f"{t} {c}" for (t, c), d in rows.groupby(["task", "cell"]) if not d["solved"].any())
    verdicts = []
    for (task, cell), d in combined.groupby(["task", "cell"]) if not combined.empty else []:
        by = d.set_index("model")
        init = by.loc["init features"] if "init features" in by.index else None
        met = init is not None and (init["held-out AUC"] >= 0.9 or init["held-out concordance"] >= 0.8)
        if init is None:
            verdicts.append(f"- {task}, {cell}: no init feature defined for every run")
            continue
        verdicts.append(
            f"- {task}, {cell}: init features alone, held out: AUC {init['held-out AUC']:.2f}, concordance "
            f"{init['held-out concordance']:.2f} (goal {'met' if met else 'missed'}); held-out AUC of T alone "
            f"{by.loc['T alone', 'held-out AUC']:.2f}, of T + init {by.loc['T + init features', 'held-out AUC']:.2f}"
        )
    text = [
        "# Does the initialisation predict memory? Per run, within each cell\n",
        f"{len(rows)} runs ({rows['study'].nunique()} points: cell x init setting x T), each one initialisation with a "
        "censored outcome: solved at its T within the budget, and the steps it took (censored at the budget). "
        f"Features of the exact initial network, each oriented so that higher predicts more memory:\n\n{features_md}\n",
        f"lambda_1 did not converge for {unconverged} runs (left out of that feature). Intervals: 95% percentile "
        f"bootstrap over runs ({BOOTSTRAP} resamples). Goals: concordance >= 0.8 or AUC >= 0.9 within each cell.\n",
        "## Each feature on its own\n",
        tables.markdown(scored, floatfmt=".3f") + "\n",
        (f"Not scored (no run solved, nothing to rank): {', '.join(none_solved)}.\n" if none_solved else ""),
        "![feature vs outcome](predicted_vs_measured.png)\n",
        "## A combination, held out\n",
        "Logistic regressions (standardised inputs) fitted on seeds "
        f"{', '.join(map(str, FIT_SEEDS))} and scored on the other seeds: T alone, the init features alone, and both. "
        "The held-out scores are the result (the in-sample AUC shows how much fitting flatters); the init features "
        "predict something T does not only where *T + init features* beats *T alone* held out.\n",
        (tables.markdown(combined, floatfmt=".3f") if not combined.empty else "No cell had both outcomes to fit.") + "\n",
        "Held-out verdicts per cell (a GRU whose runs all solved has no held-out AUC to fit):\n",
        "\n".join(verdicts) + "\n",
        "## The pre-screen as a paired counterfactual\n",
        "A point is pruned before its first step when its first seed's predicted memory length (docs/diagnostics.md) is "
        "below threshold x T. Applied to these runs, trained without it. Saved: the share of all training steps that "
        "the pruned points trained; false negatives: solved points (solved fraction >= 0.5) that would have been "
        f"pruned; a best setting lost: the setting that did best at a (cell, T) was pruned. Goals: >= {MIN_SAVED:.0%} "
        f"saved, <= {MAX_FALSE_NEGATIVES:.0%} false negatives, no best setting lost.\n",
        tables.markdown(sweep, floatfmt=".3f") + "\n",
        (
            f"Threshold chosen on the smaller-T half (largest with no best setting lost and false negatives within the "
            f"goal): **{chosen:g}**; on the held-out larger-T half:\n\n{tables.markdown(check, floatfmt='.3f')}\n"
            if chosen is not None
            else "No threshold keeps every best setting and the false-negative goal on the smaller-T half: none is "
            "chosen, the pre-screen stays off by default.\n"
        ),
        "Per-run numbers: `run_features.csv`.\n",
    ]
    (out / "report.md").write_text("\n".join(text))
