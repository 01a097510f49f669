"""Packed runs: a point's seeds trained in one module are, member by member, the runs they would be apart."""

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import Interrupt

from rnnstudy.run.store import load
from rnnstudy.run.train import train, train_pack

SEEDS = (0, 1, 2)
KEY = ["split", "metric", "step"]


def _metrics(path):
    return load(path).metrics.sort_values(KEY).reset_index(drop=True)


def _gradflow(path):
    return load(path).gradflow.sort_values(["step", "loss", "layer", "state", "t"]).reset_index(drop=True)


def _apart_and_packed(tiny, executor="auto", **overrides):
    cfgs = [tiny(seed=s, **overrides) for s in SEEDS]
    apart = [train(c.model_copy(update={"out": c.out / "apart"})) for c in cfgs]
    metas = [{"study": "p", "seed": c.seed} for c in cfgs]
    packed = train_pack(cfgs, metas=metas, executor=executor)
    return apart, packed


def _same(a, b, rel=1e-10):
    ma, mb = _metrics(a.path), _metrics(b.path)
    assert ma[KEY].equals(mb[KEY])  # the same rows: no metric, step or validation more or less
    np.testing.assert_allclose(mb["value"], ma["value"], rtol=rel, atol=1e-300)
    ga, gb = _gradflow(a.path), _gradflow(b.path)
    assert ga[["step", "loss", "layer", "state", "t"]].equals(gb[["step", "loss", "layer", "state", "t"]])
    np.testing.assert_allclose(gb["norm"], ga["norm"], rtol=rel, atol=1e-300)
    assert (a.status, a.steps, a.steps_to_solve) == (b.status, b.steps, b.steps_to_solve)
    assert b.final == pytest.approx(a.final, rel=rel) and b.best == pytest.approx(a.best, rel=rel)


@pytest.mark.parametrize("executor", ["stacked", "loop"])
@pytest.mark.parametrize(
    "cell, task, layers, probe_loss",
    [
        ("rnn_tanh", "adding", 1, "answer"),
        ("rnn_relu", "copy", 1, "training"),
        ("lstm", "copy", 2, "answer"),
        ("lstm", "adding", 1, "training"),
        ("gru", "adding", 2, "answer"),
        ("gru", "copy", 1, "answer"),
    ],
)
def test_a_packed_member_is_its_separate_run_in_float64(tiny, cell, task, layers, probe_loss, executor):
    """Every logged metric and every g_t of every member equals the separate run of its seed (float64, rel 1e-10)."""
    T = 5 if task == "copy" else 12
    apart, packed = _apart_and_packed(
        tiny, executor, model__cell=cell, model__num_layers=layers, task__name=task, task__T=T, train__precision=64,
        probe__loss=probe_loss, probe__every=7,
    )  # fmt: skip
    assert len({r.final["loss"] for r in apart}) == len(SEEDS)  # the seeds differ: a mix-up of members would show
    for a, b in zip(apart, packed):
        _same(a, b)
        info = json.loads((b.path / "run.json").read_text())
        assert info["packed"] == {"members": 3, "index": SEEDS.index(info["config"]["seed"]),
                                  "stacked": executor == "stacked"}
        assert json.loads((a.path / "run.json").read_text())["packed"] is None


@pytest.mark.parametrize(
    ("cell", "task", "layers", "block", "executor"),
    [("mingru", "adding", 1, "none", "loop"), ("lru", "copy", 2, "glu", "loop"), ("gru", "adding", 2, "glu", "stacked")],
)
def test_a_packed_member_of_a_scanned_cell_or_with_blocks_is_its_separate_run_in_float64(tiny, cell, task, layers, block,
                                                                                        executor):  # fmt: skip
    """The scanned cells pack as a loop (no stacked update is written for them), and the stacked computation applies
    each member's own blocks: each member its separate run."""
    apart, packed = _apart_and_packed(
        tiny, executor, model__cell=cell, model__num_layers=layers, task__name=task, task__T=5 if task == "copy" else 12,
        train__precision=64, probe__every=7, model__block=block,
    )  # fmt: skip
    assert len({r.final["loss"] for r in apart}) == len(SEEDS)
    for a, b in zip(apart, packed):
        _same(a, b)


def test_members_that_solve_stop_at_their_solve_and_the_others_go_on(tiny):
    """Early stop is per member: a member's record ends at its own solve, the rest train to theirs or to the budget."""
    apart, packed = _apart_and_packed(
        tiny, "stacked", model__cell="lstm", task__solved_threshold=0.8, train__early_stop=True, train__steps=60,
        train__precision=64,
    )  # fmt: skip
    ends = [a.steps for a in apart]
    assert len(set(ends)) == 3  # the design the test needs: seeds that stop at different steps, one at the budget
    for a, b in zip(apart, packed):
        _same(a, b)


class Poison(pl.Callback):
    """Sets one member's weights to NaN after a step: that member diverges, as a run of its own would."""

    def __init__(self, member: int, at: int) -> None:
        self.member, self.at = member, at

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.at:
            with torch.no_grad():
                for p in pl_module.members[self.member].net.parameters():
                    p.fill_(float("nan"))


def test_a_diverged_member_is_masked_and_the_others_are_untouched(tiny):
    cfgs = [tiny(seed=s, train__precision=64) for s in SEEDS]
    apart = [train(c.model_copy(update={"out": c.out / "apart"})) for c in cfgs]
    packed = train_pack(cfgs, metas=[{"seed": c.seed} for c in cfgs], callbacks=[Poison(1, 6)], executor="stacked")
    assert packed[1].status == "diverged" and packed[1].reason == "training loss became nan at step 6"
    assert packed[1].steps == 6
    for i in (0, 2):
        _same(apart[i], packed[i])


def test_an_interrupted_pack_resumes_from_its_checkpoint_to_the_same_numbers(tiny):
    """Killed mid-training with one member already ended, the rerun reads that one back and resumes the others."""
    cfgs = [
        tiny(seed=s, model__cell="lstm", train__steps=60, train__val_every=20, train__log_every=5, probe__every=20,
             task__solved_threshold=0.8, train__early_stop=True)
        for s in SEEDS
    ]  # fmt: skip
    metas = [{"study": "p", "seed": c.seed} for c in cfgs]
    with pytest.raises(KeyboardInterrupt):
        train_pack(cfgs, metas=metas, callbacks=[Interrupt(47)])
    (checkpoint,) = (cfgs[0].out / "t" / ".packs").glob("*/last.ckpt")
    before = {p.name: json.loads((p / "run.json").read_text())["status"] for p in (cfgs[0].out / "t").glob("2*")}
    resumed = train_pack(cfgs, metas=metas)
    assert not checkpoint.exists()
    assert sorted(p.name for p in (cfgs[0].out / "t").glob("2*")) == sorted(before)  # no run trained twice, none lost
    fresh = train_pack([c.model_copy(update={"out": c.out / "fresh"}) for c in cfgs], metas=metas)
    for r, f in zip(resumed, fresh):
        a, b = _metrics(r.path), _metrics(f.path)
        assert a[KEY].equals(b[KEY]) and (a["value"].to_numpy() == b["value"].to_numpy()).all()  # bit-identical
        assert (r.status, r.steps, r.steps_to_solve, r.final, r.best) == (f.status, f.steps, f.steps_to_solve, f.final, f.best)
    assert sorted(before.values()) == ["complete", "failed", "failed"]  # one member had ended at its solve (step 30)


def test_a_pack_stopped_before_its_first_checkpoint_trains_again_in_its_members_folders(tiny):
    """No pack checkpoint yet: the rerun trains every member again from the start, each in its own folder."""
    cfgs = [tiny(seed=s, model__cell="gru", train__steps=40, train__val_every=20, train__log_every=5) for s in SEEDS]
    metas = [{"study": "p", "seed": c.seed} for c in cfgs]
    with pytest.raises(KeyboardInterrupt):
        train_pack(cfgs, metas=metas, callbacks=[Interrupt(7)])
    assert not list((cfgs[0].out / "t" / ".packs").glob("*/last.ckpt"))
    before = sorted(p.name for p in (cfgs[0].out / "t").glob("2*"))
    again = train_pack(cfgs, metas=metas)
    assert sorted(p.name for p in (cfgs[0].out / "t").glob("2*")) == before == sorted(r.path.name for r in again)
    fresh = train_pack([c.model_copy(update={"out": c.out / "fresh"}) for c in cfgs], metas=metas)
    for r, f in zip(again, fresh):
        a, b = _metrics(r.path), _metrics(f.path)
        assert a[KEY].equals(b[KEY]) and (a["value"].to_numpy() == b["value"].to_numpy()).all()


def test_a_pack_refuses_runs_that_differ_in_more_than_the_seed(tiny):
    with pytest.raises(ValueError, match="differ only in their seed"):
        train_pack([tiny(seed=0), tiny(seed=1, train__lr=0.5)], metas=[None, None])


@pytest.mark.slow
def test_a_packed_point_through_the_cli_writes_the_files_of_its_seeds_apart(tmp_path):
    """`rnnstudy sweep` on a 5-seed point, packed (the default) and with study.pack=false: every seed's run.json
    result, metrics and gradflow files agree (float64, rel 1e-10), and only run.json's `packed` says how it ran."""
    import subprocess

    from conftest import cli

    from rnnstudy.run.store import load as load_store

    exp = tmp_path / "p.yaml"
    exp.write_text(
        "name: p\nmodel: {hidden_size: 8}\ntask: {name: adding, T: 12, val_size: 32}\n"
        "train: {steps: 60, batch_size: 16, val_every: 15, progress: false, precision: 64, optimizer: adam, lr: 0.01}\n"
        "probe: {every: 20}\nwandb: {mode: disabled}\ngrid: {model.cell: [gru, rnn_tanh]}\nseeds: [0, 1, 2, 3, 4]\n"
    )
    for name, pack in (("packed", "true"), ("apart", "false")):
        done = subprocess.run(cli("sweep", str(exp), "--workers", "1", f"out={tmp_path / name}", f"study.pack={pack}"),
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    packed, apart = load_store(tmp_path / "packed" / "p"), load_store(tmp_path / "apart" / "p")
    key = ["config.model.cell", "config.seed"]
    a = apart.runs.sort_values(key).reset_index(drop=True)
    b = packed.runs.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == 10 and a[key].equals(b[key])
    assert b["packed.members"].eq(5).all() and "packed.members" not in a or a["packed.members"].isna().all()
    for col in ("status", "steps", "steps_to_solve"):
        assert a[col].equals(b[col]), col
    np.testing.assert_allclose(b["final.norm_loss"], a["final.norm_loss"], rtol=1e-10)
    for i in range(len(a)):
        for part in ("metrics", "gradflow"):
            fa = getattr(apart, part)
            fb = getattr(packed, part)
            ra = fa[fa["run_id"] == a.loc[i, "run_id"]].drop(columns="run_id")
            rb = fb[fb["run_id"] == b.loc[i, "run_id"]].drop(columns="run_id")
            cols = [c for c in ra.columns if c not in ("value", "norm")]
            ra, rb = ra.sort_values(cols).reset_index(drop=True), rb.sort_values(cols).reset_index(drop=True)
            assert ra[cols].equals(rb[cols]) and len(ra) > 0, part
            value = "value" if part == "metrics" else "norm"
            np.testing.assert_allclose(rb[value], ra[value], rtol=1e-10, atol=1e-300)


def test_the_sweep_packs_a_point_only_where_packing_measured_faster(tmp_path):
    """On a CPU the LSTM's fused kernel beats both packed forms (benchmarks/RESULTS.md): its seeds train apart."""
    from rnnstudy.study.experiment import load_experiment

    path = tmp_path / "e.yaml"
    path.write_text("name: e\ngrid: {model.cell: [lstm, gru]}\nseeds: [0, 1, 2]\n")
    exp = load_experiment(path)
    assert exp.packs([0, 1, 2], "gru", "cpu") == [[0, 1, 2]]
    assert exp.packs([0, 1, 2], "lstm", "cpu") == [[0], [1], [2]]
    assert exp.packs([0, 1, 2], "lstm", "cuda") == [[0, 1, 2]]  # not measured there: the loop still shares the overhead
