"""The sweep worker's exact-count rules, exercised for real: a forced race for a study's last place, and the loop's bound."""

import threading

import optuna
import pytest

from rnnstudy.study import worker
from rnnstudy.study.experiment import load_experiment
from rnnstudy.study.stages import plan
from rnnstudy.study.storage import open_storage
from rnnstudy.study.studies import SURPLUS, counts, load_study


def one_study(tmp_path, design=None, name="race"):
    """One tiny study on a fresh storage: by default a random search of 2 trials; ``design`` replaces that part."""
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(
        f"name: {name}\nmodel: {{hidden_size: 4, cell: rnn_tanh}}\ntask: {{name: adding, T: 6, val_size: 16}}\n"
        "train: {steps: 4, batch_size: 4, val_every: 2, progress: false, accelerator: cpu, checkpoint: false}\n"
        f"probe: {{enabled: false}}\nwandb: {{mode: disabled}}\nout: {tmp_path / 'runs'}\n"
        + (design or search(2))
    )
    e = load_experiment(exp)
    storage, _ = open_storage(None, e, e.base())
    (stage,) = plan(e)
    (point,) = stage.points()
    return e, storage, stage, point


def search(trials):
    return "search: {train.lr: {type: float, low: 0.001, high: 0.01, log: true}}\n" + (
        f"study: {{trials: {trials}, pruner: none, sampler: random}}\n"
    )


def test_two_workers_released_together_at_the_last_place(tmp_path, monkeypatch):
    exp, storage, stage, point = one_study(tmp_path)
    study = load_study(point, storage, exp)
    worker.run_one(study, storage, exp, stage, point)  # one place taken; one left
    barrier = threading.Barrier(2)
    original = worker.objective

    def released_together(trial, *args):
        barrier.wait()  # both trials exist (RUNNING) before either looks at the places
        return original(trial, *args)

    monkeypatch.setattr(worker, "objective", released_together)
    args = (storage, exp, stage, point)
    racers = [threading.Thread(target=worker.run_one, args=(load_study(point, storage, exp), *args)) for _ in range(2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    c = counts(study)
    assert (c["complete"], c["surplus"], c["fail"]) == (2, 1, 0)  # exactly the target; the loser trained nothing
    loser = [t for t in study.trials if t.user_attrs.get("reason") == SURPLUS]
    assert loser[0].number == max(t.number for t in study.trials)  # the later trial number yields
    assert "run_ids" not in loser[0].user_attrs
    winner_runs = [t.user_attrs["run_ids"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(winner_runs) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_worker_that_met_only_surplus_places_gives_up(tmp_path, capsys):
    exp, storage, stage, point = one_study(tmp_path)
    study = load_study(point, storage, exp)
    for _ in range(2 * exp.study.trials):  # the trials a long race left behind: each ended as surplus
        trial = study.ask()
        trial.set_user_attr("reason", SURPLUS)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    worker.work(exp, storage, poll_s=0.01)
    c = counts(study)
    assert (c["complete"], c["fail"], c["surplus"]) == (0, 0, 4)  # surplus trials count towards giving up: nothing ran
    assert "0 failed and 4 surplus trials; giving up" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_trials_a_stop_signal_ended_do_not_count_towards_giving_up(tmp_path, capsys):
    """A sweep stopped twice on the same point (Ctrl-C, then a scheduler's SIGTERM) resumes it when rerun."""
    exp, storage, stage, point = one_study(tmp_path)
    study = load_study(point, storage, exp)
    for reason in ("interrupted (Ctrl-C)", "interrupted (SIGTERM)") * exp.study.trials:
        trial = study.ask()
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    worker.work(exp, storage, poll_s=0.01)
    c = counts(study)
    assert (c["complete"], c["fail"], c["interrupted"]) == (exp.study.trials, 4, 4)
    assert "giving up" not in capsys.readouterr().err


def test_waiting_trials_of_a_full_study_are_left_alone(tmp_path):
    exp, storage, stage, point = one_study(tmp_path)
    study = load_study(point, storage, exp)
    for _ in range(2):
        worker.run_one(study, storage, exp, stage, point)
    study.enqueue_trial({"train.lr": 0.005}, skip_if_exists=False)  # a retry that lost its place
    worker.work(exp, storage, poll_s=0.01)
    c = counts(study)
    assert (c["complete"], c["surplus"], c["waiting"]) == (2, 0, 1)


@pytest.mark.parametrize("trials", [1, 3])
def test_the_worker_loop_trains_exactly_the_target(tmp_path, trials):
    exp, storage, stage, point = one_study(tmp_path, search(trials))
    worker.work(exp, storage)
    c = counts(load_study(point, storage, exp))
    assert (c["complete"], c["fail"], c["surplus"], c["running"]) == (trials, 0, 0, 0)


def test_a_fixed_point_reports_every_validation_and_is_never_pruned(tmp_path):
    exp, storage, stage, point = one_study(tmp_path, "seeds: [0, 1]\nT_search: {start: 6, max: 6, refine: 0}\n", "fixed")
    worker.work(exp, storage, poll_s=0.01)
    (trial,) = load_study(point, storage, exp).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE  # a T-search point: a result, not pruned
    assert sorted(trial.intermediate_values) == [2, 4]  # Optuna's plots see its first seed's validations
    assert trial.intermediate_values[4] == pytest.approx(trial.user_attrs["final"][0])


def test_a_stale_trial_found_by_two_workers_is_queued_for_retry_once():
    """Each worker that finds a trial stale calls the retry callback (SQLite cannot stop the second from also failing
    it): the second call must not queue the same configuration again."""
    import optuna

    from rnnstudy.study.storage import RetryOnce

    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    failed = study.tell(trial, state=optuna.trial.TrialState.FAIL)
    retry = RetryOnce(max_retry=3)
    retry(study, failed)
    retry(study, failed)  # the second worker
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(queued) == 1 and queued[0].system_attrs["failed_trial"] == 0 and queued[0].params == failed.params
