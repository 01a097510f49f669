"""Does an initialisation's look at step 0 predict whether training will remember? Scored per run, within each cell.

Every run of the given studies that ended as a result (calibration runs left out: their learning rate varies; a
diverged run is a failure) is one initialisation with a censored outcome: solved at its T within the budget or not,
and the steps it took (censored at the budget when it did not solve). Each zero-parameter feature of the run's exact
initial network, oriented by the physics, is scored on its own within each cell and **within T** (pairs of runs at
the same T: at this T, which initialisation remembers?) by a stratified ROC AUC of solved-at-T and a stratified
Harrell's concordance of steps-to-solve, with 95% cluster-bootstrap intervals by setting; across-T scores, where T
itself predicts much, stand beside them, labelled. Logistic combinations are scored on unseen settings (each held
out in turn) and on every split of unseen seeds. The init-time pre-screen (``study.prescreen``) is scored as a
paired counterfactual: it is a deterministic function of a point's config and first seed, so applied to runs
trained without it, it says exactly what it would have pruned.
"""

from __future__ import annotations

import itertools
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

from rnnstudy.errors import ConfigError
from rnnstudy.model.cells import CELL_LABELS, CELL_ORDER, CELLS
from rnnstudy.model.diagnostics import diagnose, init_features
from rnnstudy.names import COMPLETE, DIVERGED, PROBE, SOLVED_FRACTION
from rnnstudy.report import figures, frames, tables
from rnnstudy.run.config import RunConfig
from rnnstudy.run.store import Results, read_info

BOOTSTRAP = 1000
#: The features, each oriented so that higher means more memory predicted, with what they are.
FEATURES = {
    "grad_ratio": "log10 answer-loss gradient at the informative steps over at the answer, step 0 (LSTM: c)",
    "timescale_reach": "fraction of gate timescales 1/(1 - keep gate) reaching the lag T needs",
    "neg_abs_lyapunov": "-|lambda_1|, over >= 200 driven steps (unconverged: left out): gradients shrink or grow as "
    "exp(lambda_1 t), so the closer lambda_1 is to 0 from either side, the further they reach",
    "neg_log_T": "-log T alone (the reference: what the T a run was tried at predicts)",
}
#: Pre-screen thresholds scored (a point is pruned when predicted memory < threshold x T).
THRESHOLDS = (0.05, 0.1, 0.25, 0.5, 1.0)
#: The pre-screen's goals: at most this false-negative rate, at least this share of training steps saved.
MAX_FALSE_NEGATIVES, MIN_SAVED = 0.05, 0.30


def run_config(folder: str | Path) -> RunConfig:
    """The exact config a run trained with, from its run.json."""
    return read_info(Path(folder)).config


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


def stratified_auc(strata: np.ndarray, solved: np.ndarray, score: np.ndarray) -> float:
    """AUC counted only over (solved, unsolved) pairs in the same stratum (a cell x T), pooled: each stratum weighs
    by its pairs. A tie in score counts one half; NaN without a pair."""
    same = strata[:, None] == strata[None, :]
    pairs = same & solved[:, None].astype(bool) & ~solved[None, :].astype(bool)
    higher = (score[:, None] > score[None, :]).astype(float) + 0.5 * (score[:, None] == score[None, :])
    n = pairs.sum()
    return float((higher * pairs).sum() / n) if n else math.nan


def stratified_concordance(strata: np.ndarray, time: np.ndarray, solved: np.ndarray, score: np.ndarray) -> float:
    """Harrell's C counted only over comparable pairs in the same stratum (a cell x T), pooled by pairs."""
    same = strata[:, None] == strata[None, :]
    sooner = same & (time[:, None] < time[None, :]) & solved[:, None].astype(bool)
    higher = (score[:, None] > score[None, :]).astype(float) + 0.5 * (score[:, None] == score[None, :])
    n = sooner.sum()
    return float((higher * sooner).sum() / n) if n else math.nan


def bootstrap(
    stat: Callable[..., float], *columns: np.ndarray, clusters: np.ndarray | None = None, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``stat(*columns)`` over resamples (resamples where it is undefined skipped).

    With ``clusters`` (a run's setting), whole clusters are resampled: runs of one setting share its initialisation
    scheme and are not independent, and resampling them one by one would make the interval too narrow.
    """
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(clusters == c) for c in np.unique(clusters)] if clusters is not None else None
    draws = []
    for _ in range(BOOTSTRAP):
        if groups is None:
            idx = rng.integers(0, len(columns[0]), len(columns[0]))
        else:
            idx = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        draws.append(stat(*(c[idx] for c in columns)))
    draws = [d for d in draws if math.isfinite(d)]
    return tuple(np.percentile(draws, [2.5, 97.5])) if len(draws) > BOOTSTRAP // 2 else (math.nan, math.nan)


def lyapunov_feature(top: float, converged: bool) -> float:
    """-|lambda_1|: a gradient scales as exp(lambda_1 t) over t steps, so it reaches furthest where lambda_1 is
    nearest 0, contracting (lambda_1 < 0) or chaotic (> 0) alike; NaN where the estimate did not converge."""
    return -abs(top) if converged else math.nan


#: The features read off a run's initial network alone (its config): computed once per run, reusable by run id.
INIT_FEATURES = ("timescale_reach", "neg_abs_lyapunov", "lyapunov_converged", "predicted_memory")


def features(res: Results, runs: pd.DataFrame, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per studied run that ended as a result: its outcome (solved, steps censored at the budget; a diverged run
    is a failure at its budget) and every feature. ``known``: an earlier per-run table whose init-time features
    (:data:`INIT_FEATURES`) are taken for the runs it holds, by run id, instead of computed again (minutes per long run)."""
    reuse = known.set_index("run_id")[list(INIT_FEATURES)] if known is not None and not known.empty else pd.DataFrame()
    studied = frames.studied(runs)
    done = studied[studied["status"].isin([COMPLETE, DIVERGED]) & studied["study"].notna()]  # a hand run is no study point
    done = tables.finished_points(done, runs)  # as for T50: a point's early solvers are not its outcome
    probe = res.metrics[(res.metrics["split"] == PROBE) & (res.metrics["step"] == 0)]
    ratios = probe.pivot_table(index="run_id", columns="metric", values="value")
    first = done.groupby("study")["seed"].min()
    rows = []
    for i, (_, run) in enumerate(done.iterrows(), 1):
        cfg = run_config(run["path"])
        state = CELLS[run["cell"]].state[-1]  # the memory state: c where the cell keeps one, else h
        ratio = ratios.get(frames.probe_metric("informative", state=state), pd.Series(dtype=float)).get(run["run_id"])
        if run["run_id"] in reuse.index:
            at_init = reuse.loc[run["run_id"]].to_dict()
        else:
            init = init_features(cfg)
            at_init = {
                "timescale_reach": init["timescale_reach"],
                "neg_abs_lyapunov": lyapunov_feature(init["lyapunov_top"], bool(init["lyapunov_converged"])),
                "lyapunov_converged": bool(init["lyapunov_converged"]),
                # What the pre-screen reads: only a point's first seed is looked at (worker.PreScreen).
                "predicted_memory": diagnose(cfg).predicted_memory if run["seed"] == first[run["study"]] else math.nan,
            }
        rows.append(
            {
                **run[["run_id", "study", "line", "cell", "task", "T", "family", "setting", "seed", "final_norm_loss"]].to_dict(),
                "solved": pd.notna(run["steps_to_solve"]),
                "time": run["steps_to_solve"] if pd.notna(run["steps_to_solve"]) else run["budget"],
                "steps": run["steps"],
                "grad_ratio": math.log10(ratio) if ratio and ratio > 0 else math.nan,
                "timescale_reach": at_init["timescale_reach"],
                "neg_abs_lyapunov": at_init["neg_abs_lyapunov"],
                "diverged": run["status"] == DIVERGED,
                "lyapunov_converged": bool(at_init["lyapunov_converged"]),
                "neg_log_T": -math.log(run["T"]),
                "predicted_memory": at_init["predicted_memory"],
            }
        )
        if i % 50 == 0 or i == len(done):
            print(f"  features {i}/{len(done)} runs", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.2f}, {hi:.2f}]"


def scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell and feature: within T (the question before a sweep: at this T, which initialisation remembers?) the
    stratified AUC of solved and concordance of steps-to-solve over runs at the same T, with cluster-bootstrap
    intervals by setting; beside them, labelled, the same scores across T (which T predicts as much as the init)."""
    out = []
    for (task, cell), part in rows.groupby(["task", "cell"]):
        for feature in FEATURES:
            d = part.dropna(subset=[feature])
            solved, time, score = d["solved"].to_numpy(), d["time"].to_numpy(float), d[feature].to_numpy(float)
            if len(d) < 10 or not solved.any():
                continue  # nothing to rank (the report names these cells)
            strata, lines = d["T"].to_numpy(), d["setting"].astype(str).to_numpy()
            row = {"task": task, "cell": cell, "feature": feature, "runs": len(d), "solved": int(solved.sum())}
            row["left out"] = len(part) - len(d)
            if feature != "neg_log_T":  # within a T, T ranks nothing
                row["within-T AUC"] = stratified_auc(strata, solved, score)
                ci = bootstrap(stratified_auc, strata, solved, score, clusters=lines)
                row["within-T AUC 95% CI (by setting)"] = _interval(*ci)
                # the seeds of one setting ranked against each other: the features barely vary there
                row["within setting and T AUC"] = stratified_auc(np.char.add(lines, strata.astype(str)), solved, score)
                row["within-T C"] = stratified_concordance(strata, time, solved, score)
                row["within-T C 95% CI (by setting)"] = _interval(
                    *bootstrap(stratified_concordance, strata, time, solved, score, clusters=lines)
                )
            row["across-T AUC"] = auc(solved, score)
            row["across-T AUC 95% CI (by setting)"] = _interval(*bootstrap(auc, solved, score, clusters=lines))
            out.append(row)
    return pd.DataFrame(out)


def _fit_score(fit: pd.DataFrame, test: pd.DataFrame, used: list[str]) -> np.ndarray:
    """A logistic model (standardised inputs) fitted on ``fit``, its probability of solving on ``test``."""
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(fit[used], fit["solved"]).predict_proba(test[used])[:, 1]


def unseen_setting_pairs(part: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    """Every within-T pair of runs from two different settings, scored by a model that saw neither setting.

    For each pair of settings (a setting's bracket seeds are that setting) a model is fitted on all the others and
    both settings' runs are scored by it, so the two runs of a pair are ranked by one model (pooling folds would rank
    runs by different models). A pair
    counts for the AUC where one run solved and the other did not (``auc``: 1, 0.5 on a tie, 0), and for the
    concordance where one solved strictly before the other's time (``c``); NaN where it does not count.
    """
    out = []
    lines = part["setting"].astype(str)
    for a, b in itertools.combinations(sorted(lines.unique()), 2):
        fit, test = part[~lines.isin([a, b])], part[lines.isin([a, b])]
        if fit["solved"].nunique() < 2:
            continue
        p, side = _fit_score(fit, test, used), (lines[test.index] == a).to_numpy()
        T, solved, time = test["T"].to_numpy(), test["solved"].to_numpy(bool), test["time"].to_numpy(float)
        for i in np.flatnonzero(side):
            for j in np.flatnonzero(~side & (T == T[i])):
                order = 1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
                first, second = (i, j) if solved[i] and (not solved[j] or time[i] < time[j]) else (j, i)
                sooner = solved[first] and time[first] < time[second]
                out.append({
                    "setting_a": a, "setting_b": b,
                    "auc": (order if solved[i] else 1 - order) if solved[i] != solved[j] else math.nan,
                    "c": (order if first == i else 1 - order) if sooner else math.nan,
                })  # fmt: skip
    return pd.DataFrame(out, columns=["setting_a", "setting_b", "auc", "c"])


def pair_score(pairs: pd.DataFrame, column: str, weights: dict[str, int] | None = None) -> float:
    """The mean of a pair score, each pair weighted by how often its two settings were drawn (all once by default)."""
    d = pairs.dropna(subset=[column])
    w = np.ones(len(d)) if weights is None else d["setting_a"].map(weights).fillna(0).to_numpy() * d["setting_b"].map(
        weights
    ).fillna(0).to_numpy()
    return float((w * d[column]).sum() / w.sum()) if w.sum() else math.nan


def pair_interval(pairs: pd.DataFrame, column: str, seed: int = 0) -> tuple[float, float]:
    """95% cluster-bootstrap interval of :func:`pair_score` by setting: settings drawn with replacement."""
    lines = sorted(set(pairs["setting_a"]) | set(pairs["setting_b"]))
    rng, draws = np.random.default_rng(seed), []
    for _ in range(BOOTSTRAP):
        drawn = rng.choice(len(lines), len(lines))
        draws.append(pair_score(pairs, column, {lines[k]: int((drawn == k).sum()) for k in range(len(lines))}))
    draws = [d for d in draws if math.isfinite(d)]
    return tuple(np.percentile(draws, [2.5, 97.5])) if len(draws) > BOOTSTRAP // 2 else (math.nan, math.nan)


def held_out(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task x cell and model: held-out within-T AUC and concordance over unseen settings (:func:`unseen_setting_pairs`)
    with a cluster-bootstrap interval by setting, and the within-T AUC over unseen seeds for every way of holding out
    two seeds (mean and range).

    Three models: T alone, the init features alone, and both. Within T, T alone ranks nothing (0.5); across T it is
    the reference the T search makes strong.
    """
    out = []
    for (task, cell), part in rows.groupby(["task", "cell"]):
        part = part.reset_index(drop=True)
        init = [f for f in FEATURES if f != "neg_log_T" and part[f].notna().all()]
        seeds, settings = sorted(part["seed"].unique()), part["setting"].nunique()
        for name, used in (("T alone", ["neg_log_T"]), ("init features", init), ("T + init features", ["neg_log_T", *init])):
            if not used:
                continue
            row = {"task": task, "cell": cell, "model": name, "features": ", ".join(used), "settings": settings}
            pairs = unseen_setting_pairs(part, used)
            row["unseen settings: within-T AUC"] = pair_score(pairs, "auc")
            row["95% CI (by setting)"] = _interval(*pair_interval(pairs, "auc"))
            row["unseen settings: within-T C"] = pair_score(pairs, "c")
            row["pairs"] = int(pairs["auc"].notna().sum())
            splits = []
            for held in itertools.combinations(seeds, 2) if len(seeds) > 2 else []:
                fit, test = part[~part["seed"].isin(held)], part[part["seed"].isin(held)]
                if fit["solved"].nunique() == 2:
                    p_test = _fit_score(fit, test, used)
                    splits.append(stratified_auc(test["T"].to_numpy(), test["solved"].to_numpy(), p_test))
            splits = [s for s in splits if math.isfinite(s)]
            row["unseen seeds: within-T AUC, mean"] = float(np.mean(splits)) if splits else math.nan
            row["range over seed splits"] = _interval(min(splits), max(splits)) if splits else "-"
            row["seed splits"] = len(splits)
            out.append(row)
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
    """Per cell: the step-0 gradient ratio, less its median over the cell's runs at the same T (the within-T ranking
    the scores judge, so that T itself cannot draw the relation), against the steps a run took to solve (unsolved:
    hollow, at the budget).

    Only tasks where some run solved: the others have nothing to show.
    """
    data = rows.dropna(subset=["grad_ratio"])
    data = data[data.groupby("task")["solved"].transform("any")]
    data = data.assign(grad_ratio=data["grad_ratio"] - data.groupby(["task", "cell", "T"])["grad_ratio"].transform("median"))
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
        ax.set(yscale="log", title=CELL_LABELS.get(cell, cell),
               xlabel="log10 gradient ratio at step 0\nminus its median at that T")  # fmt: skip
    axes[0][0].set_ylabel("steps to solve")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes[0][-1], label="T")
    fig.suptitle("Init-time gradient ratio against training, per run, within T")
    return figures.save(fig, out)


def build(res: Results, out: Path, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write the per-run scores, the held-out combination, the pre-screen counterfactual and the figure under ``out``
    (``known``: an earlier per-run table whose runs' init-time features are reused)."""
    rows = features(res, frames.run_table(res), known)
    if rows.empty:
        raise ConfigError("no run a study made ended as a result here (predict scores the runs of memory-length studies, "
                          "`rnnstudy sweep EXP.yaml`; hand runs have no study point to rank them in)")  # fmt: skip
    return score(rows, out)


def score(rows: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Everything :func:`build` writes, from the per-run feature table alone (``run_features.csv``, which it writes
    too): a committed table is re-scored without its runs."""
    figures.apply()
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / FEATURES_CSV, index=False)
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


#: The per-run table of a prediction report: each run's features and outcome.
FEATURES_CSV = "run_features.csv"

#: Settings a cell needs before its goal is judged: with fewer, a cluster bootstrap by setting cannot exclude 0.5.
MIN_SETTINGS = 8


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
        if "init features" not in by.index or "unseen settings: within-T AUC" not in by.columns:
            verdicts.append(f"- {task}, {cell}: no init feature defined for every run, or no setting to hold out")
            continue
        init = by.loc["init features"]
        a, c = init["unseen settings: within-T AUC"], init["unseen settings: within-T C"]
        if np.isnan(a) and np.isnan(c):
            verdicts.append(f"- {task}, {cell}: nothing to rank (at each T its runs all solved, or all failed)")
            continue
        if init["settings"] < MIN_SETTINGS:
            verdicts.append(
                f"- {task}, {cell}: cannot be judged: {init['settings']} settings, and an interval by setting excludes "
                f"0.5 only with at least {MIN_SETTINGS} (init features alone on unseen settings, within T: AUC {a:.2f} "
                f"{init['95% CI (by setting)']}, concordance {c:.2f}; this ranks the settings, not the seeds of one)"
            )
            continue
        met = a >= 0.9 or c >= 0.8
        verdicts.append(
            f"- {task}, {cell}: init features alone on unseen settings, within T: AUC {a:.2f} {init['95% CI (by setting)']}, "
            f"concordance {c:.2f} (goal {'met' if met else 'missed'} by the point estimates, AUC >= 0.9 or concordance "
            f">= 0.8; the interval beside the AUC is what the {init['settings']} settings allow); on unseen seeds: AUC "
            f"{init['unseen seeds: within-T AUC, mean']:.2f} mean, range {init['range over seed splits']} over "
            f"{init['seed splits']} splits"
        )
    text = [
        "# Does the initialisation predict memory? Per run, within each cell\n",
        f"{len(rows)} runs ({rows.groupby(['cell', 'setting', 'T']).ngroups} points: cell x init setting x T), each one "
        "initialisation with a "
        "censored outcome: solved at its T within the budget, and the steps it took (censored at the budget). "
        f"Features of the exact initial network, each oriented so that higher predicts more memory:\n\n{features_md}\n",
        f"Diverged runs count as failures ({int(rows['diverged'].sum())} of them). lambda_1 did not converge for "
        f"{unconverged} runs (left out of that feature). Within T: a pair of runs is compared only at the same T (the "
        "question before a sweep: at this T, which initialisation remembers?), pooled over T by pairs; across T, "
        "labelled, every pair is compared, and T itself predicts much of that. Intervals: 95% percentile cluster "
        f"bootstrap by setting ({BOOTSTRAP} resamples: runs of one setting are not independent). Goals: concordance "
        f">= 0.8 or AUC >= 0.9 within T on unseen settings, per cell, judged only with at least {MIN_SETTINGS} settings "
        "(with fewer, an interval by setting cannot exclude 0.5). Beside each between-settings score, the ranking of the "
        "seeds of one setting at one T (`within setting and T AUC`).\n",
        "## Each feature on its own\n",
        tables.markdown(scored, floatfmt=".3f") + "\n",
        (f"Not scored (no run solved, nothing to rank): {', '.join(none_solved)}.\n" if none_solved else ""),
        "![feature vs outcome](predicted_vs_measured.png)\n",
        "## A combination, held out\n",
        "Logistic regressions (standardised inputs): T alone, the init features alone, and both. Unseen settings: "
        "each setting of a cell is held out in turn and scored by a model fitted on the others, the predictions "
        "pooled and scored within T. Unseen seeds: every way of holding out two seeds, mean and range.\n",
        (tables.markdown(combined, floatfmt=".3f") if not combined.empty else "No cell had both outcomes to fit.") + "\n",
        "Verdicts per cell, on unseen settings within T (a cell whose runs all solved, or all failed, has nothing to rank):\n",
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
        f"Per-run numbers: `{FEATURES_CSV}` (`rnnstudy predict {FEATURES_CSV} --out DIR` re-scores it without the runs).\n",
    ]
    (out / "report.md").write_text("\n".join(text))
