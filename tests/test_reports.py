"""Reports built from a store that a real tiny sweep produced, and the edge cases."""

import json
import shutil

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from rnnstudy.cli import main
from rnnstudy.report import frames, frontier, gradient_lag, reproduction
from rnnstudy.report.build import build_report
from rnnstudy.run.store import Stored, hold, load, status_counts

FIGURES = ["gradient_lag.png", "heatmaps.png", "frontier.png", "budget.png", "curves.png", "search.png"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    exp = root / "tiny.yaml"
    exp.write_text(
        "name: tiny\nmodel: {hidden_size: 8}\ntask: {name: adding, val_size: 64}\n"
        "train: {steps: 30, batch_size: 16, val_every: 10, progress: false}\nprobe: {every: 10}\nwandb: {mode: disabled}\n"
        "grid:\n  model.cell: [rnn_tanh, lstm]\n  task.T: [6, 12]\nseeds: [0, 1]\n"
        "search:\n  init.recurrent: {type: categorical, choices: [default, orthogonal]}\n"
        "  init.gain: {type: float, low: 0.5, high: 1.5, when: {init.recurrent: orthogonal}}\n"
        f"out: {root / 'runs'}\nstudy: {{trials: 3, pruner: none}}\n"
    )
    assert main(["sweep", str(exp), "--workers", "2"]) == 0
    return root / "runs" / "tiny"


def test_every_figure_and_the_report(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert build_report(store, out=out) == 0
    printed = capsys.readouterr().out
    assert "[1/10] gradient flow against lag" in printed and f"report: {out / 'report.md'}" in printed
    for name in FIGURES:
        path = out / name
        assert path.stat().st_size > 10_000, name
        image = mpimg.imread(path)
        assert image[..., :3].std() > 0.05, f"{name} looks blank"
    md = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    assert "## Memory length" in md and "tiny/lstm/adding/T=12" in md and "memoryless-adding" in md
    assert "Networks (layers x units, then a linear readout at every step): tanh RNN 1 x 8; LSTM 1 x 8.\n" in md
    html = (out / "report.html").read_text()
    assert all(f'src="{name}"' in html for name in FIGURES) and "<table" in html


def test_the_report_ships_its_per_run_table_and_it_agrees_with_every_run_json(store, tmp_path):
    out = tmp_path / "report"
    assert build_report(store, out=out) == 0
    table = pd.read_csv(out / "runs.csv")
    records = {p.parent.name: json.loads(p.read_text()) for p in store.glob("*/run.json")}
    assert sorted(table["run_id"]) == sorted(r["run_id"] for r in records.values())
    for row in table.itertuples(index=False):
        record = next(r for r in records.values() if r["run_id"] == row.run_id)
        assert (row.T, row.seed, row.budget) == (record["config"]["task"]["T"], record["config"]["seed"], 30)
        assert row.solved == (record.get("steps_to_solve") is not None)
        if row.solved:  # validated every 10 steps: the solve lies in the 10 steps before the validation that saw it
            assert row.steps_to_solve == record["steps_to_solve"] and row.solved_after == row.steps_to_solve - 10
        else:
            assert np.isnan(row.solved_after) and np.isnan(row.steps_to_solve)
    assert "`runs.csv`" in (out / "report.md").read_text()


def test_frames_behind_the_figures(store):
    res = load(store)
    runs = frames.run_table(res)
    per_config = runs.groupby(["study", "config"])["seed"].apply(sorted)
    assert all(seeds == [0, 1] for seeds in per_config)  # every configuration trained both seeds
    assert runs["study"].nunique() == 4 and not res.runs["key"].duplicated().any()  # a trial repeating a config reuses its runs
    front = frontier.frame(runs)
    per_point = front.groupby(["cell", "family", "task", "T", "seed"]).size()
    assert (per_point == 1).all()
    combos = front.groupby(["cell", "family", "task", "T"]).ngroups
    assert len(front) == combos * 2  # one point per cell x init x T x seed
    lag = gradient_lag.frame(res, runs)
    assert set(lag["phase"]) == {"at init", "end"} and (lag["lag"] >= 0).all()
    assert set(lag.groupby("run_id")["T"].first()) == {6, 12}  # every T of the grid has its gradient lines
    shuffled = lag.sample(frac=1, random_state=0)  # rows follow T, not the order the study first ran them
    assert gradient_lag.panels(shuffled) == ["adding, T=6", "adding, T=12"]


def test_empty_store_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_only_failed_runs_say_so(store, tmp_path):
    root = tmp_path / "failed"
    src = sorted(store.glob("*/run.json"))[0].parent
    shutil.copytree(src, root / src.name)
    info = json.loads((root / src.name / "run.json").read_text())
    info.update(status="failed", reason="RuntimeError: out of memory")
    (root / src.name / "run.json").write_text(json.dumps(info))
    assert build_report(root, out=tmp_path / "r") == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "No run finished" in md and "out of memory" in md


def test_nan_values_and_in_progress_runs_do_not_crash(store, tmp_path):
    root = tmp_path / "nan"
    shutil.copytree(store, root, ignore=shutil.ignore_patterns("optuna.db*"))
    folders = sorted(p.parent for p in root.glob("*/run.json"))
    g = pd.read_parquet(folders[0] / "gradflow.parquet")
    g["norm"] = np.nan
    g.to_parquet(folders[0] / "gradflow.parquet")
    m = pd.read_parquet(folders[1] / "metrics.parquet")
    m["value"] = np.nan
    m.to_parquet(folders[1] / "metrics.parquet")
    for folder in folders[2:4]:
        info = json.loads((folder / "run.json").read_text())
        info["status"], info["final"] = "running", {}
        (folder / "run.json").write_text(json.dumps(info))
    lock = hold(folders[2])  # a live run holds its lock; folders[3] says running but nobody holds it: dead
    try:
        assert status_counts(root)["running"] == 1 and status_counts(root)["dead"] == 1
        assert build_report(root, out=tmp_path / "r") == 0
    finally:
        lock.close()
    text = (tmp_path / "r" / "report.md").read_text()
    assert "**In progress:** 1 runs are still running" in text
    assert "**Dead:** 1 runs say `running` but no process holds their lock" in text


def test_an_earlier_attempt_at_a_run_is_left_out_and_named(store, tmp_path):
    """A folder of a run key another folder holds, left dead or failed, is an earlier attempt: counted as superseded,
    out of every frame and the per-run table, and named in the report; a lone dead run stays dead."""
    root = tmp_path / "twice"
    shutil.copytree(store, root, ignore=shutil.ignore_patterns("optuna.db*"))
    folders = sorted(p.parent for p in root.glob("*/run.json"))
    for i, (folder, status) in enumerate(zip(folders[:3], ("running", "failed", "running"))):
        earlier = folder.with_name("20000101-000000-" + folder.name.split("-", 2)[2])
        shutil.copytree(folder, earlier)
        info = json.loads((earlier / "run.json").read_text())
        info.update(status=status, final={}, started=f"2000-01-01T00:00:0{i}Z", run_id=earlier.name)
        (earlier / "run.json").write_text(json.dumps(info))
    info = json.loads((folders[2] / "run.json").read_text())
    (folders[2] / "run.json").write_text(json.dumps({**info, "status": "failed"}))  # both attempts unfinished: newest kept
    counts = status_counts(root)
    assert counts["superseded"] == 3 and counts["failed"] == 1 and "dead" not in counts
    res = load(root)
    assert len(res.superseded) == 3 and all("/20000101-" in f for f in res.superseded)
    assert len(res.records) == len(folders) and len(res.metrics) == len(load(store).metrics)
    assert build_report(root, out=tmp_path / "r") == 0
    assert "**Left out: 3 earlier attempts**" in (tmp_path / "r" / "report.md").read_text()
    assert len(pd.read_csv(tmp_path / "r" / "runs.csv")) == len(folders)
    lone = folders[3].with_name("20000101-000009-other")
    shutil.copytree(folders[3], lone)
    info = json.loads((lone / "run.json").read_text())
    (lone / "run.json").write_text(json.dumps({**info, "key": "another", "status": "running", "run_id": lone.name}))
    assert status_counts(root)["dead"] == 1


def test_reference_verdicts():
    runs = pd.DataFrame(
        {
            "row": ["lstm128-adding"] * 2 + ["tanh128-adding"] * 2,
            "status": "complete",
            "task": "adding",
            "T": 100,
            "final_norm_loss": [0.05, 0.1, 0.98, 1.01],
            "cell": ["lstm", "lstm", "rnn_tanh", "rnn_tanh"],
            "hidden": 128,
            "optimizer": "rmsprop",
            "lr": 1e-3,
            "solved": [True, True, False, False],
            "budget": 2000,
            "device": "cpu",
            "baseline": 1 / 6,
        }
    )
    table = reproduction.frame(runs).set_index("reference")
    assert table.loc["lstm128-adding", "verdict"] == "agree"
    assert table.loc["tanh128-adding", "verdict"] == "agree"
    assert table.loc["memoryless-adding", "verdict"] == "agree"
    assert table.loc["chrono-lstm128-copy", "ours"].startswith("not run here")
    runs.loc[2, "final_norm_loss"] = 0.5
    assert reproduction.frame(runs).set_index("reference").loc["tanh128-adding", "verdict"].startswith("disagree")


def test_predict_and_prescreen_commands(store, tmp_path, capsys):
    assert main(["predict", str(store), "--out", str(tmp_path / "p")]) == 0
    rows = pd.read_csv(tmp_path / "p" / "run_features.csv")
    runs = frames.run_table(load(store))
    ended = frames.studied(runs)["status"].isin(["complete", "diverged"])  # a diverged run is a failure, not left out
    assert len(rows) == int(ended.sum()) and set(rows["cell"]) == {"rnn_tanh", "lstm"}
    first = rows.groupby("study")["seed"].transform("min") == rows["seed"]  # the pre-screen looks at a point's first seed
    assert rows.loc[first, "predicted_memory"].ge(0).all() and rows.loc[~first, "predicted_memory"].isna().all()
    assert "## The pre-screen as a paired counterfactual" in (tmp_path / "p" / "report.md").read_text()
    assert "written:" in capsys.readouterr().out
    # a rerun reuses the init-time features of the runs the earlier table holds, computing none of them again
    from rnnstudy.report import prediction

    table = tmp_path / "p" / "run_features.csv"
    planted = rows.assign(timescale_reach=rows["timescale_reach"] + 1000.0)  # a value only the table can give
    planted.iloc[1:].to_csv(table, index=False)  # the first run left out: it alone is computed
    computed = []
    monkey = pytest.MonkeyPatch()
    real = prediction.init_features
    monkey.setattr(prediction, "init_features", lambda cfg: computed.append(cfg) or real(cfg))
    try:
        assert main(["predict", str(store), "--out", str(tmp_path / "p2"), "--features-from", str(table)]) == 0
    finally:
        monkey.undo()
    again = pd.read_csv(tmp_path / "p2" / "run_features.csv").set_index("run_id").loc[rows["run_id"]]
    reach = again["timescale_reach"].to_numpy()
    assert len(computed) == 1 and np.allclose(reach[:1], rows["timescale_reach"].to_numpy()[:1], equal_nan=True)
    assert np.allclose(reach[1:], planted["timescale_reach"].to_numpy()[1:], equal_nan=True)
    assert (reach[1:] >= 1000).any()  # the LSTM's (a gateless cell has no timescale: NaN)
    assert np.array_equal(again["solved"], rows["solved"])  # outcomes are read from the runs, never from the table
    capsys.readouterr()
    assert main(["predict", str(store), "--out", str(tmp_path / "p3"), "--features-from", str(tmp_path / "no.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith("not found; allowed: a run_features.csv an earlier predict wrote")
    assert not (tmp_path / "p3").exists()
    assert main(["prescreen", str(store), str(store), "--out", str(tmp_path / "q")]) == 0
    text = (tmp_path / "q" / "report.md").read_text()
    assert "Training steps saved: 0.0%; training wall time saved: 0.0%." in text  # the same study on both sides
    assert main(["prescreen", str(store), str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "not a results folder" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_lr_sensitivity_takes_one_initialisation_at_several_lrs_and_draws_it(tmp_path):
    from rnnstudy.report import sensitivity

    def line(setting, lr, T50, censored="", family="orthogonal", cell="rnn_tanh"):
        return {"task": "adding", "cell": cell, "family": family, "axis": "", "value": np.nan, "setting": setting,
                "lr": [lr], "T50": T50 if not censored else np.nan, "low": T50 / 2, "high": T50 * 2,
                "censored": censored, "bound": T50 if censored else np.nan, "separated": False, "budget": 1500}  # fmt: skip

    memory = pd.DataFrame([
        line("lr=0.01", 0.01, 20.0), line("lr=0.001", 0.001, 10.0, censored="<"), line("lr=0.1", 0.1, 14.0),
        line("", 0.01, 80.0, family="forget", cell="lstm"),  # one lr only: no curve
    ])  # fmt: skip
    data = sensitivity.frame(memory)
    assert list(data["lr_value"]) == [0.001, 0.01, 0.1] and set(data["cell"]) == {"rnn_tanh"}
    path = sensitivity.draw(data, tmp_path / "lr.png")
    assert path.exists() and mpimg.imread(path).shape[1] > 200


def test_a_row_of_the_experiment_is_its_own_line(store):
    from dataclasses import replace

    res = load(store)
    records = [Stored(path, info.model_copy(update={"meta": info.meta.model_copy(
        update={"row": "lr=0.003" if i % 2 == 0 else "", "axis": "init.gain", "value": 1.0})}))
        for i, (path, info) in enumerate(res.records)]  # fmt: skip
    table = frames.run_table(replace(res, records=records))
    assert set(table["setting"]) == {"gain=1 lr=0.003", "gain=1"}  # two lines, told apart by the row


def test_a_fixed_points_seeds_pool_across_the_stages_that_ran_them(store):
    from dataclasses import replace

    from rnnstudy.report import tables

    res = load(store)
    lstm = [(path, info) for path, info in res.records if info.config.model.cell == "lstm" and info.config.task.T == 12]
    one = [Stored(path, info.model_copy(update={"meta": info.meta.model_copy(update={
        "params": {}, "study": "tiny/bracket/lstm/adding/T=12" if i % 2 else "tiny/lstm/adding/T=12",
        "stage": "bracket" if i % 2 else ""})})) for i, (path, info) in enumerate(lstm)]  # fmt: skip
    table = frames.run_table(replace(res, records=one))
    pooled = tables.best_trials(table)
    assert len(pooled) == len(table[table["status"].isin(["complete", "diverged"])])  # every seed of both stages
    assert set(pooled["stage"]) == {"", "bracket"}  # (the sweep's sampler may give as few as two lstm runs at T = 12)


def test_a_duration_is_printed_in_the_unit_that_fits_it():
    from rnnstudy.report.tables import duration_text

    assert [duration_text(s) for s in (0.4, 119, 120, 7199, 7200, 11700)] == [
        "0 s", "119 s", "2.0 minutes", "120.0 minutes", "2.00 hours", "3.25 hours"]  # fmt: skip


def test_a_figure_marks_an_estimate_on_fewer_seeds_as_exploratory():
    """T50 points on fewer than MIN_SEEDS seeds are drawn apart (hollow, dotted interval) and named so in the legend."""
    import matplotlib.pyplot as plt

    from rnnstudy.analysis.memory import MIN_SEEDS
    from rnnstudy.report.figures import t50_points

    memory = pd.DataFrame({"x": [1.0, 2.0], "T50": [20.0, 40.0], "low": [15.0, 30.0], "high": [25.0, 60.0], "censored": "",
                           "separated": False, "bound": np.nan, "weak": False, "seeds": [MIN_SEEDS, MIN_SEEDS - 2]})  # fmt: skip
    fig, ax = plt.subplots()
    t50_points(ax, "x", memory, "#1f77b4")
    labels = ax.get_legend_handles_labels()[1]
    plt.close(fig)
    assert labels == ["T50 [95% interval]", f"exploratory: fewer than {MIN_SEEDS} seeds"]


def test_the_search_figure_draws_a_parameter_on_a_log_axis_where_its_study_searched_it_so(tmp_path):
    """Whether an axis is logarithmic comes from the study's own Optuna distributions, not from the values' spread."""
    import optuna

    from rnnstudy.report import search

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("train.lr", 1e-4, 1e-1, log=True) + t.suggest_float("init.gain", 0.5, 1.5), 2)
    runs = pd.DataFrame({"cell": "lstm", "task": "adding", "T": 10, "status": "complete", "final_norm_loss": [0.5, 0.2],
                         "study": "s", "train.lr": [1e-4, 1e-1], "init.gain": [0.5, 15.0]})  # fmt: skip
    frame = search.objective_frame(runs, storage)
    assert frame.groupby("param")["log"].all().to_dict() == {"init.gain": False, "train.lr": True}
    assert not search.objective_frame(runs)["log"].any()  # no storage: nothing is known to be log-searched
    assert search.draw(frame, tmp_path / "search.png").stat().st_size > 10_000


def test_a_point_with_a_run_still_open_is_left_out_of_every_estimate_whole(store):
    """A packed point's early solvers end first: while any of its seeds runs (or lies dead or failed, to be resumed),
    none of the seeds its stage ran there enters the T50 data (another stage's finished seeds at that T still do)."""
    from rnnstudy.report import prediction, tables

    res = load(store)
    table = frames.run_table(res)
    every = prediction.features(res, table)
    key = tables.POINT  # the seeds one stage ran at one point of a line
    before = tables.best_trials(table)
    point = before.groupby(key).filter(lambda d: len(d) >= 2).iloc[0][key]  # a point with at least two seeds
    at_point = (table[key] == point).all(axis=1)
    for status in ("running", "dead", "failed"):  # outcome not known yet: the sweep resumes each
        opened = table.copy()
        opened.loc[table.index[at_point][0], "status"] = status
        kept = tables.best_trials(opened)
        assert not (kept[key] == point).all(axis=1).any()  # the whole point, not only its open seed
        assert len(kept) == len(before) - (before[key] == point).all(axis=1).sum()  # and nothing else
        assert tables.unfinished(opened)[key].values.tolist() == [point.tolist()]
        drawn = gradient_lag.frame(res, opened)  # and so does the gradient figure
        assert not set(drawn["run_id"]) & set(table[at_point]["run_id"]) and len(drawn)
        scored = prediction.features(res, opened, known=every)  # the prediction's per-run table leaves it out alike
        assert set(scored["run_id"]) == set(every["run_id"]) - set(table[at_point]["run_id"])
    seed = before.loc[(before[key] == point).all(axis=1), "run_id"].iloc[0]  # a seed the estimate uses
    bracket = table.copy()  # that seed run by the bracket stage instead, still running: only it is left out
    bracket.loc[table["run_id"] == seed, ["stage", "status"]] = ["bracket", "running"]
    kept = tables.best_trials(bracket)
    same_T = (kept[key[:-1]] == point[key[:-1]]).all(axis=1)  # the line at that T, whichever stage ran its seeds
    assert seed not in set(kept["run_id"]) and same_T.any()  # the open seed out, the finished seeds there still in


def test_a_table_of_bounds_on_one_side_is_called_no_result_for_t50_and_only_then():
    from rnnstudy.names import Censored
    from rnnstudy.report.build import bounds_note

    def memory(*sides):
        return pd.DataFrame({"censored": list(sides)})

    located = bounds_note("adding", memory(Censored.NONE, Censored.NONE), pd.DataFrame())
    assert located == ""
    mixed = bounds_note("adding", memory(Censored.ABOVE, Censored.NONE), pd.DataFrame())
    assert mixed.startswith("adding: 1 of 2 estimates are bounds") and "ties" not in mixed
    both_sides = bounds_note("adding", memory(Censored.ABOVE, Censored.BELOW), pd.DataFrame())
    assert "ties" not in both_sides  # one line above the grid and one below it: the design reached both ends
    tied = bounds_note("adding", memory(Censored.ABOVE, Censored.ABOVE), pd.DataFrame({"alpha": [0.2]}))
    assert "ties at the design's edge and is not a result for T50" in tied and "growth exponent" not in tied
    with_laws = bounds_note("adding", memory(Censored.ABOVE, Censored.ABOVE), pd.DataFrame({"alpha": [0.2, 0.1]}))
    assert with_laws.endswith("Every line's growth exponent (above) is fitted from its solves, which need no transition.")


def test_lines_are_ordered_only_where_an_interval_or_bound_lies_wholly_above_another():
    from rnnstudy.names import Censored
    from rnnstudy.report.build import order_note
    from rnnstudy.report.tables import ordered

    def line(setting, T50=np.nan, low=np.nan, high=np.nan, censored=Censored.NONE, bound=np.nan, seeds=5, weak=False,
             budget=1500):  # fmt: skip
        return {"task": "adding", "cell": "lru", "family": "ring", "setting": setting, "T50": T50, "low": low, "high": high,
                "censored": censored.value, "bound": bound, "seeds": seeds, "weak": weak, "budget": budget}

    memory = pd.DataFrame([
        line("a", censored=Censored.ABOVE, bound=256),   # T50 > 256
        line("b", 55.7, 43.8, 200),                      # its point estimate lies above c's, its interval does not
        line("c", 44.3, 32.4, 91.2),
        line("d", 10, 5, 12, seeds=3),                   # exploratory: no verdict, never ordered
        line("e", censored=Censored.ABOVE, bound=300, weak=True),
        line("f", 5, 4, 6, budget=6000),                 # another budget: compared with nothing
        line("g", censored=Censored.BELOW, bound=10),    # T50 < 10: below c's interval
    ])  # fmt: skip
    assert sorted(ordered(memory)) == [(0, 1), (0, 2), (0, 6), (1, 6), (2, 6)]
    text = order_note("adding", memory)
    assert text.endswith(": LRU ring a > LRU ring b, LRU ring c, LRU ring g; LRU ring b > LRU ring g; "
                         "LRU ring c > LRU ring g. No other pair is ordered.")
    assert order_note("adding", memory.iloc[[1, 2]]).endswith(": no pair; every pair's intervals or bounds overlap, "
                                                            "or a line has no verdict.")
