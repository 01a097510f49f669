"""The pre-screen measured: the same study with ``study.prescreen`` off and on, same trial budget.

    rnnstudy prescreen runs/frontier_cpu runs/frontier_cpu_prescreen --out docs/results/prescreen

Compares the training compute (steps trained and wall time over every run) and, per study, the
best objective Optuna reached, and writes ``report.md`` with both tables.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from rnnstudy.names import sqlite_url
from rnnstudy.report import frames, tables
from rnnstudy.run.store import load
from rnnstudy.study.storage import DB_FILE

#: The study facts that identify one study across two sweeps of the same experiment (its name holds the experiment's).
FACTS = ["stage", "cell", "task", "T", "family", "axis", "value", "row"]


def best_values(results: Path) -> tuple[pd.Series, int]:
    """Best objective per study, keyed by the study's facts (:data:`FACTS`), not its name; and the trials per study."""
    storage = sqlite_url(results / DB_FILE)
    out, trials = {}, []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        key = tuple(study.user_attrs.get(f) for f in FACTS)
        if key in out:
            raise ValueError(f"{results}: two studies share the facts {dict(zip(FACTS, key))}")
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.state.name != "FAIL"]
        trials.append(len(finished))
        try:
            out[key] = study.best_value
        except ValueError:  # every trial pruned: nothing reached
            out[key] = float("nan")
    return pd.Series(out, name="best"), max(trials, default=0)


def compare(off: Path, on: Path, out: Path) -> pd.DataFrame:
    """Write the comparison under ``out``; return the per-study table."""
    stores = {"off": load(off), "on": load(on)}
    runs = {k: frames.run_table(res) for k, res in stores.items()}
    compute = pd.DataFrame(
        {
            k: {
                "runs": len(r),
                "pruned by the pre-screen": int(r["reason"].fillna("").str.startswith("pre-screen").sum()),
                "steps trained": float(pd.to_numeric(r["steps"], errors="coerce").sum()),
                "training wall time (h)": float(r["wall_s"].sum() / 3600),
            }
            for k, r in runs.items()
        }
    ).T
    saved_steps = 1 - compute.loc["on", "steps trained"] / compute.loc["off", "steps trained"]
    saved_time = 1 - compute.loc["on", "training wall time (h)"] / compute.loc["off", "training wall time (h)"]
    (best_off, budget), (best_on, _) = best_values(off), best_values(on)
    best = pd.concat({"off": best_off, "on": best_on}, axis=1)
    best.index.names = FACTS
    best = best.reset_index()
    lost = best[best["on"].isna() & best["off"].notna()]
    both = best.dropna(subset=["off", "on"])
    # Per cell x task x T: does the best family of the unscreened study survive the pre-screen?
    winners = best.loc[best.groupby(["cell", "task", "T"])["off"].idxmin()]
    lost_best = winners[winners["on"].isna()][["cell", "task", "T", "family", "off"]]
    memory = {}
    for k, r in runs.items():
        m = tables.memory_length(r, stores[k])
        memory[k] = m.assign(estimate=m.apply(tables.estimate_text, axis=1)).set_index(tables.LINE)["estimate"]
    verdicts = pd.concat(memory, axis=1).reset_index()
    changed = verdicts[verdicts["off"] != verdicts["on"]]
    out.mkdir(parents=True, exist_ok=True)
    best.to_csv(out / "best_per_study.csv", index=False)
    lines = [
        f"# Pre-screen on {off.name}\n",
        f"`{off}` (pre-screen off) against `{on}` (`study.prescreen=1.0`: a trial is pruned before its first step when its "
        f"initialisation's predicted memory length is below T); same experiment, same trial budget ({budget} per study), same "
        "seeds. The sampler is not seeded, so the two sweeps drew different parameters: per-study differences of a few "
        "percent are sampling noise, not the pre-screen.\n",
        "## Compute\n",
        tables.markdown(compute.reset_index(names="pre-screen"), floatfmt=".4g") + "\n",
        f"Training steps saved: {saved_steps:.1%}; training wall time saved: {saved_time:.1%}.\n",
        "## What it lost\n",
        f"Studies (cell x task x T x family) whose every trial the pre-screen pruned: {len(lost)} of {len(best)}. "
        f"On the {len(both)} studies both sweeps finished, the mean best objective (final validation loss / baseline, "
        f"mean over seeds) is {both['off'].mean():.4f} off and {both['on'].mean():.4f} on.\n",
        f"Cell x task x T whose best family without the pre-screen was pruned away entirely by it: "
        f"{len(lost_best)} of {len(winners)}.\n",
        tables.markdown(lost_best.rename(columns={"family": "best family (off)", "off": "its best objective"}), floatfmt=".4g")
        + "\n",
        "## Memory-length verdicts that changed\n",
        "With the pre-screen on, a family pruned at some T has no verdict above that T (the gap is listed in the "
        "frontier table), so its verdict can only shrink; where it grows, the two sweeps sampled different parameters.\n",
        tables.markdown(changed, floatfmt=".4g") + "\n",
        "Every study: `best_per_study.csv`.\n",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return best
