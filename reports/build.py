"""Build every figure and the written report (Markdown + HTML) from a results folder."""

from __future__ import annotations

import html
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports import curves, frames, frontier, gradient_lag, heatmaps, reproduction, search, style, tables
from rnnstudy.store import Results, load

CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
)


@dataclass
class Section:
    """One part of the report: prose, figures and tables, rendered to Markdown and HTML alike."""

    title: str
    text: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)


def _storage(results: list[Path], storage: str | None) -> str | None:
    if storage:
        return storage
    dbs = [r / "optuna.db" for r in results if (r / "optuna.db").exists()]
    return f"sqlite:///{dbs[0].resolve()}" if len(dbs) == 1 else None


def _overview(runs: pd.DataFrame, results: list[Path]) -> Section:
    counts = runs["status"].value_counts().to_dict()
    done = frames.finished(runs)
    devices = ", ".join(sorted(str(d) for d in runs["device"].dropna().unique() if d)) or "unknown"
    hours = np.nansum(runs["wall_s"]) / 3600
    text = [
        f"Results {', '.join(f'`{r}`' for r in results)}: {len(runs)} runs "
        f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), "
        f"cells {', '.join(style.CELL_LABELS[c] for c in style.cells_present(runs['cell'].unique()))}, "
        f"tasks {', '.join(sorted(runs['task'].unique()))}, T in {{{', '.join(str(t) for t in sorted(runs['T'].unique()))}}}.",
        f"Hardware: {devices}. Training time {hours:.2f} device-hours in total.",
        "Normalised loss is the loss divided by the memoryless baseline (copy: 10 ln 8 / (T+20); adding: 1/6): "
        "1.0 means the network learned nothing a model without memory could not; "
        "*solved* means copy recall accuracy >= 0.99 or adding MSE <= 0.01 at a validation.",
    ]
    if counts.get("running"):
        text.append(
            f"**In progress:** {counts['running']} runs have not finished (a sweep still running, or killed workers whose "
            "trials will be retried). The figures use the finished runs only."
        )
    if done.empty:
        text.append("**No run finished**, so there is nothing to compare yet. Why the runs ended:")
    return Section("Overview", text, tables=[tables.status_counts(runs)])


def _findings(runs: pd.DataFrame, res: Results, memory: pd.DataFrame) -> list[str]:
    lines = []
    probe = res.metrics[
        (res.metrics["split"] == "probe") & (res.metrics["metric"] == "decay_rate/l0/h") & (res.metrics["step"] == 0)
    ]
    at_init = probe.merge(runs[["run_id", "cell", "family"]], on="run_id").dropna(subset=["value"])
    if not at_init.empty:
        med = at_init.groupby("cell")["value"].median().sort_values()
        parts = [f"{style.CELL_LABELS[c]} {v:+.3f}" for c, v in med.items()]
        lines.append(
            "Median log10 decay of the gradient per step back in time at initialisation (all inits): "
            + ", ".join(parts)
            + " (a slope of -0.1 loses a factor 10 every 10 steps)."
        )
    if not memory.empty:
        col = "memory length (largest T solved)"
        solved = memory[memory[col].apply(lambda v: isinstance(v, int))]
        for task, d in solved.groupby("task"):
            top = d.sort_values(col, ascending=False).iloc[0]
            lines.append(
                f"{task}: the longest memory is {style.CELL_LABELS[top['cell']]} with {top['init']} init (T = {top[col]})."
            )
        unsolved = memory[~memory.index.isin(solved.index)]
        if not unsolved.empty:
            lines.append(
                "Never solved within the budget: "
                + "; ".join(f"{style.CELL_LABELS[r['cell']]} {r['init']} on {r['task']}" for _, r in unsolved.iterrows())
                + "."
            )
    return lines


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
    if res.runs.empty:
        where = ", ".join(map(str, results))
        print(f"rnnstudy report: no runs under {where} (run `rnnstudy train` or `rnnstudy sweep` first)", file=sys.stderr)
        return 2
    style.apply()
    runs = frames.run_table(res)
    name = "+".join(r.resolve().name for r in results)
    out = Path(out) if out else Path("reports") / name
    out.mkdir(parents=True, exist_ok=True)
    storage = _storage(results, storage)

    front = frontier.frame(runs)
    memory = tables.memory_length(front, res, runs)
    steps: list[tuple[str, Callable[[], Section]]] = [
        (
            "gradient flow against lag",
            lambda: Section(
                "Gradient flow against lag",
                [
                    "log10 of the mean per-sample ||dL/dh_t|| against how far back t lies from the end of the sequence, at "
                    "initialisation and at the end of training, for the best and the default initialisation of each cell. "
                    "A flat line reaches far back; a falling one vanishes."
                ],
                [p for p in [gradient_lag.draw(gradient_lag.frame(res, runs), out / "gradient_lag.png")] if p],
            ),
        ),
        (
            "gradient-flow heatmaps",
            lambda: Section(
                "Gradient-flow heatmaps",
                ["Each panel: one run (best initialisation, first seed); rows are probed training steps, columns time steps t."],
                [p for p in [heatmaps.draw(heatmaps.frame(res, runs), out / "heatmaps.png")] if p],
            ),
        ),
        (
            "memory-length frontier",
            lambda: Section(
                "Memory-length frontier",
                [
                    "Final normalised validation loss (top) and fraction of seeds solved (bottom) against T, per cell and "
                    "initialisation family (each family at its best searched parameters)."
                ],
                [p for p in [frontier.draw(front, out / "frontier.png")] if p],
                [memory],
            ),
        ),
        (
            "learning curves",
            lambda: Section(
                "Learning curves",
                ["Validation loss / baseline against training step, best initialisation per cell."],
                [p for p in [curves.draw(curves.frame(res, runs), out / "curves.png")] if p],
            ),
        ),
        (
            "initialisation search",
            lambda: Section(
                "Initialisation search",
                ["Which initialisation parameters mattered (Optuna parameter importances) and the objective against each."],
                [
                    p
                    for p in [
                        search.draw(
                            search.objective_frame(runs),
                            search.importance_frame(storage, sorted(runs["study"].dropna().unique())),
                            out / "search.png",
                        )
                    ]
                    if p
                ],
                [tables.best_parameters(runs)],
            ),
        ),
        ("reference results", lambda: reproduction.section(runs, out)),
    ]
    sections = [_overview(runs, results)]
    if frames.finished(runs).empty:
        reasons = runs[["run_id", "status", "reason"]]
        sections[0].tables.append(reasons)
    else:
        for i, (title, make) in enumerate(steps, 1):
            section = make()
            sections.append(section)
            where = ", ".join(str(p) for p in section.images) or "table only"
            print(f"[{i}/{len(steps)}] {title}: {where}", flush=True)
        sections.insert(1, Section("What it shows", _findings(runs, res, memory) or ["Too few finished runs to compare."]))
    (out / "report.md").write_text(_render_md(name, sections, out))
    (out / "report.html").write_text(_render_html(name, sections, out))
    print(f"report: {out / 'report.md'} (and report.html)")
    return 0
