"""The T search: the points it visits on a known outcome, through the real worker loop and storage, a kill, two workers."""

import threading
import time
from pathlib import Path

import optuna
import pytest

import rnnstudy.run.train
from rnnstudy.run.records import RunResult
from rnnstudy.study import worker
from rnnstudy.study.experiment import load_experiment
from rnnstudy.study.stages import lines
from rnnstudy.study.storage import open_storage
from rnnstudy.study.studies import counts, experiment_studies
from rnnstudy.study.tsearch import TSearch, bracket, confirm, next_T, visited


def walk(search, solved_up_to):
    """Every T the search visits when a point is solved exactly when T <= solved_up_to."""
    verdicts = {}
    while (T := next_T(search, verdicts)) is not None:
        verdicts[T] = T <= solved_up_to
    return visited(search, verdicts)


def test_the_search_multiplies_then_bisects_in_log_T():
    search = TSearch(start=10, factor=2, max=160, refine=2)
    assert search.ladder() == [10, 20, 40, 80, 160]
    assert walk(search, 50) == [10, 20, 40, 80, 57, 48]  # 57 = round(sqrt(40 x 80)), 48 = round(sqrt(40 x 57))
    assert walk(search, 5) == [10]  # failed at the start: T50 < 10, nothing to refine
    assert walk(search, 1000) == [10, 20, 40, 80, 160]  # solved at max: T50 > 160
    assert walk(TSearch(start=10, factor=2, max=100, refine=1), 1000) == [10, 20, 40, 80, 100]  # the ladder stops at max
    assert walk(TSearch(start=10, max=20, refine=9), 15) == [10, 20, 14, 17, 15, 16]  # stops once no integer T is left
    with pytest.raises(ValueError, match="max = 5 is below start = 10"):
        TSearch(start=10, max=5)


def test_the_bracket_is_the_last_T_solved_and_the_first_failed_not_the_last_two_visited():
    search = TSearch(start=10, factor=2, max=160, refine=2)
    verdicts = {T: T <= 45 for T in walk(search, 45)}
    assert list(verdicts) == [10, 20, 40, 80, 57, 48]  # 57 and 48 both fail: the crossing lies between 40 and 48
    assert bracket(search, verdicts) == [40, 48]
    assert bracket(search, {T: T <= 1000 for T in walk(search, 1000)}) == []  # solved at max: nothing to bracket


def fresh_walk(search, verdicts, fresh_up_to):
    """The T the bracket seeds visit when they solve exactly T <= fresh_up_to."""
    fresh = {}
    while (T := confirm(search, verdicts, fresh)) is not None:
        fresh[T] = T <= fresh_up_to
    return list(fresh)


def test_the_bracket_seeds_move_on_while_their_own_verdicts_put_the_crossing_outside():
    """The search's seeds solved 40 and failed 48 (its bracket); fresh seeds that agree stop there, fresh seeds that
    also solve 48 go up by the factor to max, and fresh seeds that fail 40 go down to start: their verdicts alone
    move it, so the search's luck at the T it stopped on cannot place the bracket."""
    search = TSearch(start=10, factor=2, max=160, refine=2)
    verdicts = {T: T <= 45 for T in walk(search, 45)}
    assert fresh_walk(search, verdicts, 45) == [40, 48]
    assert fresh_walk(search, verdicts, 100) == [40, 48, 96, 160]  # 96 solved: on to max (160), failed there
    assert fresh_walk(search, verdicts, 1000) == [40, 48, 96, 160]  # solved at max: the bound is the report's
    assert fresh_walk(search, verdicts, 25) == [40, 48, 20]  # 40 failed: down to 20, solved there
    assert fresh_walk(search, verdicts, 5) == [40, 48, 20, 10]  # down to start and no further
    assert fresh_walk(search, {10: False}, 100) == []  # nothing to bracket


def search_experiment(
    tmp_path: Path, heartbeat_s: int = 30, storage_url: str | None = None, name: str = "ts", more: str = ""
):
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(
        f"name: {name}\n"
        "model: {hidden_size: 4}\ntask: {name: adding, T: 10, val_size: 16}\n"
        "train: {steps: 4, batch_size: 4, val_every: 2, progress: false, accelerator: cpu}\nwandb: {mode: disabled}\n"
        "grid: {model.cell: [rnn_tanh, gru]}\nseeds: [0, 1, 2]\n"
        f"T_search: {{start: 10, factor: 2, max: 160, refine: 2{more}}}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 1, pruner: none, heartbeat_s: {heartbeat_s}}}\n"
    )
    e = load_experiment(exp)
    storage, _ = open_storage(storage_url, e, e.base())
    return e, storage


#: The fake outcome: the tanh RNN remembers up to T = 50 (seed 2 only to 30, so a point is still decided by the majority),
#: the GRU up to T = 100.
LIMIT = {"rnn_tanh": 50, "gru": 100}


class FakeTraining:
    """Stands in for training: records each call and says solved by the known outcome, or stops like a kill."""

    def __init__(self, kill_at_call: int | None = None):
        self.calls, self.kill_at_call, self.lock = [], kill_at_call, threading.Lock()

    def __call__(self, cfg, callbacks=(), meta=None, group=None):
        with self.lock:
            self.calls.append((cfg.model.cell, cfg.task.T, cfg.seed))
            if self.kill_at_call is not None and len(self.calls) == self.kill_at_call:
                raise KeyboardInterrupt  # the worker dies mid-trial: its trial stays running until its heartbeat is stale
        limit = LIMIT[cfg.model.cell] - (20 if cfg.seed == 2 else 0)
        solved = cfg.task.T <= limit
        final = {"norm_loss": 0.5 if solved else 1.0}
        run_id = f"{cfg.model.cell}-{cfg.task.T}-{cfg.seed}"
        return RunResult(run_id, Path("."), "complete", None, final, {}, 4, 2 if solved else None, 0.0)


def packed(fake):
    """A fake run as the worker calls training: a point's seeds as one pack, each run as the fake says."""

    def pack(cfgs, callbacks=(), metas=(), group=None):
        return [fake(c, callbacks, m, group) for c, m in zip(cfgs, metas)]

    return pack


def visited_points(exp, storage):
    return {line.cfg.model.cell: stage.next(storage, line).visited for stage, line in lines(exp)}


EXPECTED = {"rnn_tanh": (10, 20, 40, 80, 57, 48), "gru": (10, 20, 40, 80, 160, 113, 95)}


def test_the_worker_visits_the_right_points_each_once(tmp_path, monkeypatch):
    fake = FakeTraining()
    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(fake))
    exp, storage = search_experiment(tmp_path)
    worker.work(exp, storage, poll_s=0.01)
    assert visited_points(exp, storage) == EXPECTED
    points = sum(len(v) for v in EXPECTED.values())
    assert len(fake.calls) == points * 3 and len(set(fake.calls)) == len(fake.calls)  # every point x seed trained once
    assert (
        all(counts(s)["complete"] == 1 for s in experiment_studies(storage, "ts"))
        and len(experiment_studies(storage, "ts")) == points
    )


def test_bracket_seeds_run_at_the_two_T_around_each_crossing_once_its_search_is_done(tmp_path, monkeypatch):
    fake = FakeTraining()
    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(fake))
    exp, storage = search_experiment(tmp_path, more=", bracket_seeds: [3, 4]")
    worker.work(exp, storage, poll_s=0.01)
    assert {line.cfg.model.cell: stage.next(storage, line).visited for stage, line in lines(exp) if not stage.label} == EXPECTED
    extra = sorted(c for c in fake.calls if c[2] >= 3)
    # tanh: solved at 48, failed at 57 (the last bisection); GRU: solved at 95, failed at 113
    assert extra == sorted((cell, T, seed) for cell, Ts in {"rnn_tanh": (48, 57), "gru": (95, 113)}.items()
                           for T in Ts for seed in (3, 4))  # fmt: skip
    searched = optuna.load_study(study_name="ts/rnn_tanh/adding/T=57", storage=storage).trials[0]
    assert len(searched.user_attrs["solved"]) == 3  # the search's verdict reads its own seeds only
    more = optuna.load_study(study_name="ts/bracket/rnn_tanh/adding/T=57", storage=storage).trials[0]
    assert more.user_attrs["solved"] == [False, False]
    with pytest.raises(Exception, match=r"bracket_seeds: \[2\] are also in seeds"):
        search_experiment(tmp_path, name="clash", more=", bracket_seeds: [2, 5]")


def test_a_killed_search_resumes_without_running_a_point_twice(tmp_path, monkeypatch):
    exp, storage = search_experiment(tmp_path, heartbeat_s=1)
    killed = FakeTraining(kill_at_call=8)  # the third point's second seed
    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(killed))
    with pytest.raises(KeyboardInterrupt):
        worker.work(exp, storage, poll_s=0.01)
    time.sleep(2.5)  # past the heartbeat grace period (2 x heartbeat_s): the dead trial is failed and retried
    rerun = FakeTraining()
    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(rerun))
    worker.work(exp, storage, poll_s=0.01)
    assert visited_points(exp, storage) == EXPECTED
    studies = experiment_studies(storage, "ts")
    assert all(counts(s)["complete"] == 1 for s in studies)  # never a point twice
    assert sum(counts(s)["fail"] for s in studies) == 1  # the killed trial, retried
    finished = set(killed.calls[:6])  # the two points finished before the kill are not run again
    assert not finished & set(rerun.calls) and len(rerun.calls) == sum(len(v) for v in EXPECTED.values()) * 3 - 6


def test_one_and_two_workers_visit_the_same_points(tmp_path, monkeypatch):
    two_workers_on(tmp_path, monkeypatch, None, "ts")


def test_two_workers_on_postgresql_visit_the_same_points(tmp_path, monkeypatch, postgres_url):
    two_workers_on(tmp_path, monkeypatch, postgres_url, f"ts_pg_{tmp_path.name[-8:].replace('-', '_')}")


def two_workers_on(tmp_path, monkeypatch, url, name):
    fake = FakeTraining()
    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(fake))
    exp, storage = search_experiment(tmp_path, storage_url=url, name=name)
    errors = []

    def run():
        try:
            worker.work(exp, storage, poll_s=0.01)
        except Exception as err:  # surfaced below
            errors.append(err)

    workers = [threading.Thread(target=run) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and visited_points(exp, storage) == EXPECTED
    assert all(counts(s)["complete"] == 1 for s in experiment_studies(storage, name))
    assert len(set(fake.calls)) == len(fake.calls) == sum(len(v) for v in EXPECTED.values()) * 3
    assert {t.state for s in experiment_studies(storage, name) for t in s.trials} <= {
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
    }


#: The fake calibration outcome per lr: each seed's final normalised loss, None where it diverged. At 1e-2 the best
#: seed is best of all, but two of three diverge, so its median is inf; 3e-3 wins on its median.
CALIBRATION_FINALS = {1e-3: [0.6, 0.6, 0.7], 3e-3: [0.5, 0.4, 0.45], 1e-2: [0.1, None, None], 3e-2: [0.55] * 3, 1e-1: [None] * 3}


def test_the_calibrated_lr_is_the_stages_choice_in_the_worker_and_the_report(tmp_path, monkeypatch):
    import pandas as pd

    from rnnstudy.report.calibration import chosen, chosen_table
    from rnnstudy.study.stages import CalibrationStage, plan

    calls = []

    def fake(cfg, callbacks=(), meta=None, group=None):
        calls.append((meta["stage"], cfg.train.lr, cfg.seed, cfg.task.T))
        value = CALIBRATION_FINALS[cfg.train.lr][cfg.seed] if meta["stage"] else 0.5
        status = "diverged" if value is None else "complete"
        final = {} if value is None else {"norm_loss": value}
        return RunResult(f"r{len(calls)}", Path("."), status, None, final, {}, 4, None, 0.0)

    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(fake))
    exp_file = tmp_path / "cal.yaml"
    exp_file.write_text(
        "name: cal\nmodel: {hidden_size: 4, cell: rnn_tanh}\ntask: {name: adding, T: 10, val_size: 16}\n"
        "train: {steps: 4, batch_size: 4, val_every: 2, progress: false, accelerator: cpu}\nwandb: {mode: disabled}\n"
        f"calibrate: {{lr: {list(CALIBRATION_FINALS)}, T: 20}}\nseeds: [0, 1]\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 1}}\n"
    )
    exp = load_experiment(exp_file)
    storage, _ = open_storage(None, exp, exp.base())
    calibration, grid = plan(exp)
    assert isinstance(calibration, CalibrationStage) and calibration.seeds == [0, 1, 2] and grid.seeds == [0, 1]
    worker.work(exp, storage, poll_s=0.01)
    assert sorted(c for c in calls if c[0]) == sorted(("calibration", lr, s, 20) for lr in CALIBRATION_FINALS for s in range(3))
    assert [c for c in calls if not c[0]] == [("", 3e-3, 0, 10), ("", 3e-3, 1, 10)]  # the line trained at the choice
    assert calibration.chosen_lr(storage, grid.points()[0].base) == 3e-3
    # The report reads the same rule off the run frames (a diverged run: NaN final loss there).
    rows = [
        {"task": "adding", "cell": "rnn_tanh", "base": "", "T": 20, "lr": lr, "seed": s, "stage": "calibration",
         "status": "diverged" if v is None else "complete", "final_norm_loss": float("nan") if v is None else v}
        for lr, finals in CALIBRATION_FINALS.items() for s, v in enumerate(finals)
    ]  # fmt: skip
    runs = pd.DataFrame([*rows, {**rows[0], "stage": "", "lr": 3e-3, "T": 10}])
    table = chosen(runs[runs["stage"] == "calibration"], runs)
    assert table["chosen_lr"].tolist() == [3e-3] and table["trained_lr"].tolist() == [[3e-3]]
    assert chosen_table(table)[["chosen lr", "lr the study trained at", "bracketed"]].values.tolist() == [[3e-3, "0.003", "yes"]]


@pytest.mark.parametrize(
    "extend, best_at, chosen_lr, bracketed", [(2, 0.25, 0.1 * (0.1 / 0.03), True), (1, 100.0, 0.1 * (0.1 / 0.03), False)]
)
def test_a_choice_at_the_grid_edge_extends_the_grid_until_it_is_bracketed(
    tmp_path, monkeypatch, extend, best_at, chosen_lr, bracketed
):
    """The final loss falls towards ``best_at``: past the grid's top (0.1), the stage adds 0.1 x (0.1/0.03)^k one at a
    time while the choice sits at the top, and the line trains at the bracketed choice (or, at the bound, at the edge,
    which the report marks as not bracketed). Nothing is added below the grid."""
    import math

    import pandas as pd

    from rnnstudy.report.calibration import chosen, chosen_table
    from rnnstudy.study.stages import plan

    calls = []

    def fake(cfg, callbacks=(), meta=None, group=None):
        calls.append((meta["stage"], cfg.train.lr, cfg.seed))
        final = abs(math.log10(cfg.train.lr / best_at)) + 0.1 + 0.01 * cfg.seed
        return RunResult(f"r{len(calls)}", Path("."), "complete", None, {"norm_loss": final}, {}, 4, None, 0.0)

    monkeypatch.setattr(rnnstudy.run.train, "train_pack", packed(fake))
    grid = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    exp_file = tmp_path / "edge.yaml"
    exp_file.write_text(
        "name: edge\nmodel: {hidden_size: 4, cell: rnn_tanh}\ntask: {name: adding, T: 10, val_size: 16}\n"
        "train: {steps: 4, batch_size: 4, val_every: 2, progress: false, accelerator: cpu}\nwandb: {mode: disabled}\n"
        f"calibrate: {{lr: {grid}, T: 20, extend: {extend}}}\nseeds: [0]\nout: {tmp_path / 'runs'}\nstudy: {{trials: 1}}\n"
    )
    exp = load_experiment(exp_file)
    storage, _ = open_storage(None, exp, exp.base())
    calibration, line = plan(exp)
    worker.work(exp, storage, poll_s=0.01)
    tried = sorted({lr for stage, lr, _ in calls if stage})
    above = [0.1 * (0.1 / 0.03) ** k for k in range(1, 3)]
    expected = grid + above[: 2 if bracketed else extend]
    assert tried == pytest.approx(expected) and min(tried) == 1e-3  # nothing below the grid
    assert calibration.chosen_lr(storage, line.points()[0].base) == pytest.approx(chosen_lr)
    assert [lr for stage, lr, _ in calls if not stage] == [pytest.approx(chosen_lr)]  # the line trained at the choice
    runs = pd.DataFrame(
        [{"task": "adding", "cell": "rnn_tanh", "base": "", "T": 20, "lr": lr, "seed": s, "stage": st or "",
          "status": "complete", "final_norm_loss": abs(math.log10(lr / best_at)) + 0.1 + 0.01 * s}
         for st, lr, s in calls]
    )  # fmt: skip
    table = chosen_table(chosen(runs[runs["stage"] == "calibration"], runs))
    assert table["bracketed"].iloc[0].startswith("yes" if bracketed else "no: at the edge")
