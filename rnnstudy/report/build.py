"""Build every figure and the written report (Markdown + HTML) from a results folder."""

from __future__ import annotations

import html
import sys
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.storages import BaseStorage

from rnnstudy.analysis.memory import MIN_SEEDS
from rnnstudy.errors import ConfigError
from rnnstudy.model.cells import CELL_LABELS, CELL_ORDER, CELLS
from rnnstudy.model.tasks import TASKS
from rnnstudy.names import DEAD, PROBE, RUNNING, Censored, sqlite_url
from rnnstudy.report import budget, figures, frames, tables
from rnnstudy.report.sections import SECTIONS, Inputs, Section
from rnnstudy.run.store import Results, load
from rnnstudy.study.storage import DB_FILE, mask, reader

#: The per-run table a report writes beside itself, and its findings as a summary other documents copy.
RUNS_CSV, SUMMARY_MD = "runs.csv", "summary.md"

CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
)


def _storage(results: list[Path], storage: str | None) -> BaseStorage | None:
    """The Optuna storage to read (given, or the one experiment's SQLite file); checked readable, never created."""
    if not storage:
        dbs = [r / DB_FILE for r in results if (r / DB_FILE).exists()]
        if len(dbs) != 1:
            return None
        storage = sqlite_url(dbs[0])
    try:
        opened = reader(storage)
        optuna.get_all_study_names(opened)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"storage {mask(storage)}: cannot read it: {' '.join(str(err).split())[:200]}") from None
    return opened


def _output_folder(out: Path) -> Path:
    """The report's folder, checked writable before anything is drawn."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out = {str(out)!r}: is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-")
        probe.close()
    except OSError as err:
        raise ConfigError(f"--out = {str(out)!r}: cannot write there ({err.strerror or type(err).__name__})") from None
    return out


def _overview(runs: pd.DataFrame, results: list[Path]) -> Section:
    counts = runs["status"].value_counts().to_dict()
    done = frames.complete(runs)
    devices = ", ".join(sorted(str(d) for d in runs["device"].dropna().unique() if d)) or "unknown"
    packs = runs["members"] > 1
    packed = f"{int(packs.sum())} runs packed, several seeds in one process sharing its time" if packs.any() else "none packed"
    text = [
        f"Results {', '.join(f'`{r}`' for r in results)}: {len(runs)} runs "
        f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), "
        f"cells {', '.join(CELL_LABELS[c] for c in figures.cells_present(runs['cell'].unique()))}, "
        f"tasks {', '.join(sorted(runs['task'].unique()))}, T in {{{', '.join(str(t) for t in sorted(runs['T'].unique()))}}}.",
        f"Networks (layers x units, then a linear readout at every step): {_networks(runs)}.",
        f"Hardware: {devices}. Training time {_training_text(runs, 'of device time in total')}; {packed}.",
        f"Normalised loss is the loss divided by the memoryless baseline ({_baselines(runs)}): 1.0 means the network "
        "learned nothing a model without memory could not; "
        f"*solved* means, at a validation, {_solved_bars(runs)} (the bars these runs used).",
    ]
    if counts.get(RUNNING):
        text.append(
            f"**In progress:** {counts[RUNNING]} runs are still running (their process holds the run's lock). "
            "The figures use the complete runs only."
        )
    if counts.get(DEAD):
        text.append(
            f"**Dead:** {counts[DEAD]} runs say `running` but no process holds their lock: they were killed. Rerun the "
            "command that started them (or the sweep, which retries their trials) to resume them from their checkpoints."
        )
    if done.empty:
        text.append("**No run finished**, so there is nothing to compare yet. Why the runs ended:")
    return Section("Overview", text, tables=[tables.status_by_cell(runs)])


def _baselines(runs: pd.DataFrame) -> str:
    """Each task's memoryless baseline and what its T is, in words, for the tasks these runs trained on."""
    return "; ".join(f"{t}: {TASKS[t].baseline_text} (T: {TASKS[t].T_means})" for t in sorted(runs["task"].unique()))


def _solved_bars(runs: pd.DataFrame) -> str:
    """The solved criteria the runs were judged by, per task (the experiment may set its own)."""
    parts = []
    for task, d in runs.groupby("task"):
        spec = TASKS[task]
        sign = ">=" if spec.solved_higher_is_better else "<="
        bars = sorted({float(v) for v in d["threshold"].fillna(spec.default_threshold)})
        parts.append(f"{task}: {spec.solved_metric.replace('_', ' ')} {sign} {' or '.join(f'{b:g}' for b in bars)}")
    return "; ".join(parts)


def _findings(runs: pd.DataFrame, res: Results, memory: pd.DataFrame, rungs: pd.DataFrame,
              growth: pd.DataFrame) -> list[str]:  # fmt: skip
    """Sentences that compare only numbers measured under the same conditions (same task, T, budget, per family)."""
    lines = []
    studied = frames.studied(runs)
    carriers = {s: [spec.label for spec in CELLS.values() if s in spec.state] for spec in CELLS.values() for s in spec.state}
    for state, cells in carriers.items():
        what = f"{state}_t" if state == "h" else f"the cell state {state}_t ({', '.join(cells)})"
        probe = res.metrics[
            (res.metrics["split"] == PROBE)
            & (res.metrics["metric"] == frames.probe_metric("decay_rate", state=state))
            & (res.metrics["step"] == 0)
        ]
        at_init = probe.merge(studied[["run_id", "cell", "task", "T", "family", "setting"]], on="run_id").dropna(subset=["value"])
        for task, d in at_init.groupby("task"):
            T = int(d["T"].min())
            med = d[d["T"] == T].groupby(["cell", "family", "setting"])["value"].median()
            parts = [f"{tables.line_label(c, f, s)} {v:+.3f}" for (c, f, s), v in med.items()]
            lines.append(
                f"{task}, T = {T}: median log10 decay per step back in time of the answer-loss gradient through {what} at "
                "initialisation, per cell and family: " + "; ".join(parts) + " (-0.1 loses a factor 10 every 10 steps)."
            )
    still = tables.unfinished(runs)
    for task, d in still.groupby("task"):
        points = "; ".join(f"{tables.line_label(r.cell, r.family, r.setting)} at T = {r.T}"
                           + (f" ({r.stage} seeds)" if r.stage else "") for r in d.itertuples())  # fmt: skip
        lines.append(f"{task}: left out of every estimate below until their runs end (running, or stopped or failed "
                     f"and to be resumed; the seeds that ended first are the ones that solved early): {points}.")  # fmt: skip
    for task, d in memory.groupby("task") if not memory.empty else []:
        order = d.assign(key=d["T50"].fillna(d["bound"]))  # the number each prints; a bound's order is no claim
        parts = [
            f"{tables.line_label(r['cell'], r['family'], r['setting'])}: {tables.estimate_text(r)} "
            f"(at {r['budget']} steps, lr {', '.join(f'{v:g}' for v in r['lr'])})"
            for _, r in order.sort_values("key", ascending=False).iterrows()
        ]
        lines.append(f"{task}, memory length (T50 as its runs allow, an estimate with its 95% interval over seeds, a "
                     "bracket, or a bound with its evidence; listed by the number each prints, which orders nothing "
                     "where a bound stands): " + "; ".join(parts) + ".")  # fmt: skip
        few = d[d["seeds"] < MIN_SEEDS]
        if not few.empty:
            lines.append(f"{task}: {len(few)} estimates rest on fewer than {MIN_SEEDS} seeds and are exploratory, not verdicts.")
        if len(d) > 1:
            lines.append(order_note(task, d))
        ladder = rungs[rungs["task"] == task] if not rungs.empty else rungs
        ladder_lines = dict(list(ladder.groupby(tables.LINE, sort=False))) if not ladder.empty else {}
        verdicts = {key: budget.rising(r) for key, r in ladder_lines.items()}
        rises = [k for k, v in verdicts.items() if v.startswith("yes")]
        if verdicts:
            label = {k: tables.line_label(*k[1:]) for k in verdicts}
            names = "; ".join(label[k] for k in rises) or "none"
            late = "; ".join(f"{label[k]}: {budget.added(ladder_lines[k])}" for k in verdicts)
            lines.append(
                f"{task}: T50 still rises at the full budget (its 95% interval or bound wholly above the one at the "
                f"rung below) for {len(rises)} of {len(verdicts)} lines: {names}; for the others a rise is not shown "
                f"by this rule, which is not a plateau either. What the last rung added: {late}."
            )
        laws = growth[(growth["task"] == task) & growth["alpha"].notna()] if not growth.empty else growth
        if not laws.empty:
            lrs = d.set_index(tables.LINE)["lr"]
            parts = [f"{tables.line_label(r['cell'], r['family'], r['setting'])}: "
                     f"{budget.alpha_text(r)} (at {r['budget']:.0f} steps, lr "
                     f"{', '.join(f'{v:g}' for v in lrs.loc[tuple(r[tables.LINE])])})" for _, r in laws.iterrows()]  # fmt: skip
            lines.append(f"{task}, growth of steps to solve with T (steps ~ T^alpha, alpha with its 95% profile-likelihood "
                         "interval and the T its solves span): " + "; ".join(parts) + ".")  # fmt: skip
        if note := bounds_note(task, d, laws):
            lines.append(note)
    return lines


def order_note(task: str, memory: pd.DataFrame) -> str:
    """Which lines' memory lengths the rule orders (:func:`~rnnstudy.report.tables.ordered`), each line with those below
    it; every other pair is said to be unordered."""
    label = {i: tables.line_label(r["cell"], r["family"], r["setting"]) for i, r in memory.iterrows()}
    below: dict[object, list[str]] = {}
    for a, b in tables.ordered(memory):
        below.setdefault(a, []).append(label[b])
    rule = (f"{task}, memory lengths ordered by rule (one line's 95% interval or bound wholly above another's, both at "
            f"the same budget, each at its own lr, with at least {MIN_SEEDS} seeds and no weak bound)")
    if not below:
        return f"{rule}: no pair; every pair's intervals or bounds overlap, or a line has no verdict."
    pairs = "; ".join(f"{label[a]} > {', '.join(names)}" for a, names in below.items())
    return f"{rule}: {pairs}. No other pair is ordered."


def bounds_note(task: str, memory: pd.DataFrame, laws: pd.DataFrame) -> str:
    """How many of a task's T50 are bounds; where all are, on one side, that the table ties at the design's edge (and
    whether every line's growth exponent, which needs no transition, was fitted)."""
    censored = memory[memory["censored"] != Censored.NONE]
    if censored.empty:
        return ""
    note = (f"{task}: {len(censored)} of {len(memory)} estimates are bounds (the runs do not reach past the transition on "
            "one side): they bound T50 and locate nothing.")  # fmt: skip
    if len(censored) < len(memory) or censored["censored"].nunique() > 1:
        return note
    note += (" Every line is a bound on the same side: this table ties at the design's edge and is not a result for T50; "
             "to locate T50 the design has to move its T range or budget to reach the transition.")  # fmt: skip
    if len(laws) == len(memory):
        note += " Every line's growth exponent (above) is fitted from its solves, which need no transition."
    return note


def _networks(runs: pd.DataFrame) -> str:
    """Each cell's architecture as the runs trained it: layers x units, and the block after each layer if any."""
    shapes = runs[["cell", "layers", "hidden", "block"]].drop_duplicates()
    shapes = shapes.assign(order=shapes["cell"].map(CELL_ORDER.index)).sort_values(["order", "layers", "hidden"])
    return "; ".join(f"{CELL_LABELS[c]} {n} x {h}" + (f", each layer followed by the {b.upper()} block" if b != "none" else "")
                     for c, n, h, b in shapes[["cell", "layers", "hidden", "block"]].itertuples(index=False))  # fmt: skip


def _training_text(runs: pd.DataFrame, what: str) -> str:
    """The training the runs took (``what`` it is called), a packed run's members sharing its time; a lower bound where a
    run was resumed (what a kill lost after the last checkpoint was trained again and is not counted)."""
    text = f"{tables.duration_text(float(np.nansum(runs['wall_s'] / runs['members'])))} {what}"
    resumed = int(runs["resumed"].sum())
    return f"at least {text} ({resumed} runs resumed from a checkpoint)" if resumed else text


def _summary(name: str, runs: pd.DataFrame, findings: list[str]) -> str:
    """The report's findings with what they stand on (runs, training time), for the README's generated results."""
    head = (f"`{name}`: {len(runs)} runs ({', '.join(f'{v} {k}' for k, v in sorted(runs['status'].value_counts().items()))}), "
            f"{_training_text(runs, 'of training summed over runs')}, per-run table `{RUNS_CSV}`.")  # fmt: skip
    return "\n".join([head, "", *(f"- {line}" for line in findings)]) + "\n"


def _render_md(name: str, sections: list[Section], out: Path) -> str:
    parts = [f"# rnnstudy report: {name}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        parts += [t + "\n" for t in s.text]
        parts += [f"![{s.title}]({img.relative_to(out)})\n" for img in s.images]
        parts += [tables.markdown(t) + "\n" for t in s.tables]
    return "\n".join(parts)


def _render_html(name: str, sections: list[Section], out: Path) -> str:
    body = [f"<h1>rnnstudy report: {html.escape(name)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body += [f"<p>{html.escape(t).replace('**', '')}</p>" for t in s.text]
        body += [f'<img src="{img.relative_to(out)}" alt="{html.escape(s.title)}">' for img in s.images]
        body += [t.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}") for t in s.tables]
    return f"<!doctype html><meta charset=utf-8><title>{html.escape(name)}</title><style>{CSS}</style>" + "\n".join(body)


def build_report(results: str | Path | list[str | Path], out: str | Path | None = None, storage: str | None = None) -> int:
    """``rnnstudy report``: figures + report.md + report.html; exit 2 when there is nothing to report.

    Several results folders (other boxes, other experiments) are read as one store.
    """
    results = [Path(r) for r in (results if isinstance(results, list) else [results])]
    res = load(*[r for r in results if r.exists()])
    for folder, why in res.skipped:
        print(f"rnnstudy report: warning: skipping damaged run {folder}: {why}", file=sys.stderr)
    if res.runs.empty:
        where = ", ".join(map(str, results))
        print(f"rnnstudy report: no runs under {where} (run `rnnstudy train` or `rnnstudy sweep` first)", file=sys.stderr)
        return 2
    name = "+".join(r.resolve().name for r in results)
    storage = _storage(results, storage)
    out = _output_folder(Path(out) if out else Path("reports") / name)
    figures.apply()
    runs = frames.run_table(res)

    memory = tables.memory_length(runs, res)
    inputs = Inputs(res, runs, memory, storage, out, budget.frame(runs))
    sections = [_overview(runs, results)]
    if res.skipped:
        sections[0].text.append(
            f"**Skipped {len(res.skipped)} damaged runs** (unreadable files): "
            + "; ".join(f"`{f}` ({why})" for f, why in res.skipped)
        )
    if res.superseded:
        sections[0].text.append(
            f"**Left out: {len(res.superseded)} earlier attempts** at runs another folder of the same run key holds "
            "(killed or failed, then trained again there): " + "; ".join(f"`{Path(f).name}`" for f in res.superseded)
        )
    if frames.complete(runs).empty:
        reasons = runs[["run_id", "status", "reason"]]
        sections[0].tables.append(reasons)
    else:
        for i, spec in enumerate(SECTIONS, 1):
            section = spec.render(inputs)
            sections.append(section)
            where = ", ".join(str(p) for p in section.images) or "table only"
            print(f"[{i}/{len(SECTIONS)}] {spec.title.lower()}: {where}", flush=True)
        findings = _findings(runs, res, memory, *inputs.ladder) or ["Too few finished runs to compare."]
        sections.insert(1, Section("What it shows", findings))
        (out / SUMMARY_MD).write_text(_summary(name, runs, findings))
    tables.per_run(runs).to_csv(out / RUNS_CSV, index=False)
    sections[0].text.append(
        f"Every run behind this report is one row of `{RUNS_CSV}` (its stage, cell, initialisation and setting, lr, T, "
        "seed, whether and when it solved, between which validations, its budget and final loss): every number here can "
        "be re-derived from it without the harness."
    )
    (out / "report.md").write_text(_render_md(name, sections, out))
    (out / "report.html").write_text(_render_html(name, sections, out))
    print(f"report: {out / 'report.md'} (and report.html)")
    return 0
