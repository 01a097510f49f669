"""Tables: memory length (T50) per cell x init, best parameters per study, run status counts."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from rnnstudy.analysis.memory import MIN_SEEDS, T50, steps_to_solve, t50
from rnnstudy.model.cells import CELL_LABELS
from rnnstudy.names import DEAD, FAILED, PROBE, RUNNING, SOLVED_FRACTION, Censored
from rnnstudy.report import frames, search
from rnnstudy.run.store import Results

#: What identifies one line of a memory-length study: its cell, task, family and the axis value it is held at.
LINE = ["task", "cell", "family", "setting"]


def line_label(cell: str, family: str, setting: str) -> str:
    """A line as the report's prose names it: the cell's label, its family and its setting (where it has one)."""
    return " ".join(p for p in (CELL_LABELS[cell], family, setting) if p)


def memory_length(runs: pd.DataFrame, res: Results) -> pd.DataFrame:
    """Per task x cell x family x setting: T50 with its 95% interval (rnnstudy.analysis.memory), and the data behind it.

    Machine columns, one fact each: ``T50``/``low``/``high`` (NaN where censored), ``censored`` (a
    :class:`~rnnstudy.names.Censored` value) with its ``bound``, ``separated`` with its ``bracket_low``/``bracket_high``
    (design points), the ``budget`` (steps), ``seeds``, ``T_visited`` and ``solved_fraction``
    (one per T visited, in T order), the Kaplan-Meier median ``steps_to_solve`` with its interval at ``steps_at_T``
    (the largest T at least half the seeds solved; unsolved runs censored at the budget), ``lr``, and the
    answer-loss gradient ``horizon_at_init`` at the largest T tried (``horizon_T``). Each run is one (seed, T)
    observation, solved within its budget or not; grid experiments with several trials per study use each T's
    best trial (its seeds). :func:`memory_table` writes it for people.
    """
    lines = best_trials(frames.studied(runs))
    if lines.empty:
        return pd.DataFrame()
    probe = res.metrics[(res.metrics["split"] == PROBE) & (res.metrics["metric"] == frames.probe_metric("horizon"))]
    at_init = probe[probe["step"] == 0].set_index("run_id")["value"]
    rows = []
    for (task, cell, family, setting), d in lines.groupby(LINE, dropna=False):
        estimate = t50(d)
        fractions = d.groupby("T")["solved"].mean()
        good = fractions[fractions >= SOLVED_FRACTION]
        at = int(good.index.max()) if not good.empty else int(fractions.index.min())
        here = d[d["T"] == at]
        km = steps_to_solve(here["steps_to_solve"].astype(float), here["budget"].astype(float))
        largest = d[d["T"] == d["T"].max()]
        horizons = at_init.reindex(largest["run_id"]).dropna()
        rows.append(
            {
                "task": task,
                "cell": cell,
                "family": family,
                "setting": setting,
                "axis": d["axis"].iloc[0],
                "value": d["value"].iloc[0],
                **estimate_columns(estimate),
                "budget": int(d["budget"].max()),
                "solved_fraction": [float(fractions[T]) for T in estimate.T_tried],
                "steps_to_solve": km.median,
                "steps_low": km.low,
                "steps_high": km.high,
                "steps_at_T": at,
                "lr": sorted(float(v) for v in d["lr"].unique()),
                "horizon_at_init": float(np.median(horizons)) if len(horizons) else np.nan,
                "horizon_T": int(largest["T"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


#: The per-run table every committed study ships (``runs.csv``): what a referee needs to re-derive each number.
PER_RUN = ["run_id", "experiment", "stage", "task", "cell", "family", "setting", "init", "lr", "T", "seed", "status",
           "solved", "solved_after", "steps_to_solve", "budget", "val_every", "final_norm_loss", "steps", "wall_s",
           "members", "resumed"]  # fmt: skip


def per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run in :data:`PER_RUN` order: a solve lies in (``solved_after``, ``steps_to_solve``], between the
    validation before the one that first met the bar and that one (the bracket a growth law is fitted on)."""
    return runs[PER_RUN].sort_values(["stage", "task", "cell", "family", "setting", "T", "seed"]).reset_index(drop=True)


def estimate_columns(estimate: T50) -> dict[str, object]:
    """A T50 estimate as machine columns: ``T50``/``low``/``high`` (NaN where censored), ``censored`` with its
    ``bound``, ``separated`` with ``bracket_low``/``bracket_high``, ``seeds``, ``T_visited`` and the ``counts`` behind
    it ([T, solved, runs] per T)."""
    censored = estimate.censored is not Censored.NONE
    return {
        "T50": np.nan if censored else estimate.estimate, "low": estimate.low, "high": estimate.high,
        "censored": estimate.censored.value, "bound": estimate.estimate if censored else np.nan,
        "separated": estimate.separated, "bracket_low": estimate.bracket[0], "bracket_high": estimate.bracket[1],
        "weak": estimate.weak,
        "seeds": estimate.seeds, "T_visited": list(estimate.T_tried), "counts": [list(c) for c in estimate.counts],
    }  # fmt: skip


def estimate_text(row: pd.Series) -> str:
    """One line's memory length as a report writes it: ``T50 = 57 [41, 80]``, ``T50 > 320``, ``T50 < 10``."""
    censored = Censored(row["censored"])
    value = row["bound"] if censored is not Censored.NONE else row["T50"]
    bracket = (row["bracket_low"], row["bracket_high"])
    counts = tuple(tuple(int(v) for v in c) for c in row["counts"])
    return T50(value, row["low"], row["high"], censored, int(row["seeds"]), tuple(row["T_visited"]), 0.95,
               bool(row["separated"]), bracket, counts, bool(row["weak"])).text()  # fmt: skip


def span(row: pd.Series) -> tuple[float, float]:
    """The values of T50 a row's estimate leaves open: its 95% interval, or a bound's side."""
    if row["censored"] == Censored.ABOVE:
        return row["bound"], np.inf
    if row["censored"] == Censored.BELOW:
        return 0.0, row["bound"]
    return row["low"], row["high"]


def ordered(memory: pd.DataFrame) -> list[tuple[object, object]]:
    """The pairs of lines (index above, index below) the rule orders: same task and budget, each with a verdict (at
    least :data:`MIN_SEEDS` seeds, no weak bound), and the first one's 95% interval or bound wholly above the second's."""
    judged = memory[(memory["seeds"] >= MIN_SEEDS) & ~memory["weak"].astype(bool)]
    spans = {i: span(r) for i, r in judged.iterrows()}
    return [(a, b) for a, b in itertools.permutations(judged.index, 2)
            if judged.at[a, "task"] == judged.at[b, "task"] and judged.at[a, "budget"] == judged.at[b, "budget"]
            and spans[a][0] >= spans[b][1]]  # fmt: skip


def memory_table(memory: pd.DataFrame) -> pd.DataFrame:
    """The memory-length frame written for people: the estimate in words, the T visited and solved fractions as text."""
    if memory.empty:
        return memory
    return pd.DataFrame(
        {
            "task": memory["task"],
            "cell": memory["cell"],
            "init family": memory["family"],
            "setting": memory["setting"].replace("", "-"),
            "memory length": memory.apply(estimate_text, axis=1),
            "budget (steps)": memory["budget"],
            "lr": memory["lr"].map(lambda v: ", ".join(f"{x:g}" for x in v)),
            "seeds": memory["seeds"],
            "T visited": memory["T_visited"].map(lambda v: ", ".join(map(str, v))),
            "solved fraction at each T": [
                ", ".join(f"{T}: {f:.0%}" for T, f in sorted(zip(Ts, fs)))
                for Ts, fs in zip(memory["T_visited"], memory["solved_fraction"])
            ],
            "steps to solve (KM median [95%])": [
                f"{_steps(m)} [{_steps(lo)}, {_steps(hi)}] at T = {at}"
                for m, lo, hi, at in memory[["steps_to_solve", "steps_low", "steps_high", "steps_at_T"]].itertuples(index=False)
            ],
            "gradient horizon at init (answer loss, steps)": memory["horizon_at_init"],
            "at T": memory["horizon_T"],
        }
    )


#: What identifies the seeds one stage ran at one point of a line (a T search's, or its bracket seeds'), together.
POINT = [*LINE, "T", "stage"]


def unfinished(runs: pd.DataFrame) -> pd.DataFrame:
    """The points of the study proper (line x T x stage) with a run whose outcome is not known yet: still running,
    killed (``dead``) or failed (a stop signal, a crash), each of which the study's sweep resumes from its checkpoint."""
    open_ = frames.studied(runs)
    open_ = open_[open_["status"].isin([RUNNING, DEAD, FAILED])] if not open_.empty else open_
    return open_[POINT].drop_duplicates() if not open_.empty else pd.DataFrame(columns=POINT)


def best_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """Every seed of each line x T's best configuration, a diverged seed in as unsolved (the runs T50 is read from).
    The seeds a stage ran at a point with a run whose outcome is not known yet (:func:`unfinished`) are left out
    together: the seeds that ended first are the ones that solved early, so those that ended alone would overstate it."""
    return finished_points(frames.best_configs(runs, [*LINE, "T"], diverged=True), runs)


def finished_points(chosen: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``chosen`` outside every point of ``runs`` with a run whose outcome is not known yet (:func:`unfinished`),
    which are left out whole: the seeds that ended first are the ones that solved early."""
    still = unfinished(runs)
    if chosen.empty or still.empty:
        return chosen
    marked = chosen.merge(still.assign(open_point=True), on=POINT, how="left")
    return chosen[marked["open_point"].isna().to_numpy()]


def duration_text(seconds: float) -> str:
    """A duration in the unit that fits it: seconds below two minutes, minutes below two hours, then hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds / 3600:.2f} hours"


def _steps(value: float) -> str:
    return "not reached" if np.isinf(value) else ("-" if np.isnan(value) else f"{value:.0f}")


def best_parameters(runs: pd.DataFrame) -> pd.DataFrame:
    """Per searched study, the configuration with the lowest mean final normalised loss, its parameters, and how many it beat."""
    done = frames.complete(frames.studied(runs)).dropna(subset=["study", "final_norm_loss"])
    if done.empty:
        return pd.DataFrame()
    params = [c for c in runs.columns if c.startswith(search.PARAM_PREFIXES)]
    rows = []
    for study, d in done.groupby("study"):
        per_config = d.groupby("config")["final_norm_loss"].mean()
        first = d[d["config"] == per_config.idxmin()].sort_values("trial").iloc[0]
        chosen = {p: first[p] for p in params if pd.notna(first.get(p))}
        if not chosen:
            continue  # nothing searched: a fixed point, not a search result
        rows.append(
            {
                "study": study,
                "configurations finished": int(d["config"].nunique()),
                "best trial": int(first["trial"]),
                "best loss / baseline": per_config.min(),
                "init": first["init"],
                "parameters": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items()),
            }
        )
    return pd.DataFrame(rows)


def status_by_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """The report's table of runs per status and cell (``store.status_counts`` counts run folders on disk)."""
    return runs.pivot_table(index="cell", columns="status", values="run_id", aggfunc="count", fill_value=0).reset_index()


def markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table."""
    if df.empty:
        return "_(no rows)_"

    def fmt(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "-" if np.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])
