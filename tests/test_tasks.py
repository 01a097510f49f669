"""Task generators against their published definitions (README, docs/references.md), and the memoryless baselines."""

import math

import pytest
import torch

from rnnstudy.model.tasks import TASKS, AddingTask, CopyTask, make_task


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("T", [1, 5, 200])
def test_copy_layout(T):
    task = CopyTask(T)
    b = task.sample(256, gen())
    L = T + 20
    assert b.x.shape == (L, 256, 10) and b.y.shape == (L, 256)
    symbols = b.x.argmax(-1)
    assert torch.equal(b.x.sum(-1), torch.ones(L, 256))
    assert symbols[:10].max() <= 7 and symbols[:10].min() >= 0
    assert (symbols[10 : T + 9] == 8).all() and (symbols[10 : T + 9].shape[0] == T - 1)
    assert (symbols[T + 9] == 9).all()
    assert (symbols[T + 10 :] == 8).all() and symbols[T + 10 :].shape[0] == 10
    assert (b.y[: T + 10] == 8).all()
    assert torch.equal(b.y[T + 10 :], symbols[:10])
    assert b.informative[:10].all() and not b.informative[10:].any()


def test_copy_symbols_uniform():
    data = CopyTask(10).sample(20000, gen()).x.argmax(-1)[:10]
    freq = torch.bincount(data.flatten(), minlength=8).float() / data.numel()
    assert torch.allclose(freq, torch.full((8,), 1 / 8), atol=0.005)


@pytest.mark.parametrize("T", [2, 7, 100])
def test_adding_layout(T):
    task = AddingTask(T)
    b = task.sample(4096, gen(1))
    assert b.x.shape == (T, 4096, 2) and b.y.shape == (4096,)
    values, markers = b.x[..., 0], b.x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert torch.equal(markers.sum(0), torch.full((4096,), 2.0))
    half = T // 2
    assert torch.equal(markers[:half].sum(0), torch.ones(4096))
    assert torch.equal(markers[half:].sum(0), torch.ones(4096))
    assert torch.allclose(b.y, (values * markers).sum(0))
    assert torch.equal(b.informative, markers.bool())


def test_adding_marker_positions_cover_halves():
    b = AddingTask(20).sample(20000, gen(2))
    pos = b.x[..., 1].nonzero()[:, 0]
    counts = torch.bincount(pos, minlength=20).float()
    assert (counts > 0).all()
    assert torch.allclose(counts / counts.sum(), torch.full((20,), 1 / 20), atol=0.01)


@pytest.mark.parametrize("T", [200, 500, 1000])
def test_copy_baseline_matches_memoryless_predictor(T):
    task = CopyTask(T)
    b = task.sample(512, gen(3))
    # The best memoryless model: certain blank before recall, uniform over 8 data symbols during it.
    logits = torch.full((T + 20, 512, 9), -1e9)
    logits[: T + 10, :, 8] = 0
    logits[T + 10 :, :, :8] = 0
    assert task.loss(logits, b).item() == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-6)
    assert task.baseline == pytest.approx({200: 0.0945, 500: 0.0400, 1000: 0.0204}[T], abs=5e-5)


def test_adding_baseline_matches_predict_one():
    task = AddingTask(50)
    b = task.sample(200_000, gen(4))
    out = torch.ones(50, 200_000, 1)
    mse = task.loss(out, b).item()
    # D = S - 1 is triangular on [-1, 1]: E[D^2] = 1/6, E[D^4] = 1/15, so Var(D^2) = 1/15 - 1/36 = 7/180.
    stderr = math.sqrt(7 / 180) / math.sqrt(200_000)
    assert abs(mse - 1 / 6) < 4 * stderr
    assert task.baseline == pytest.approx(1 / 6)


def test_copy_metrics_recall_only():
    task = CopyTask(20)
    b = task.sample(64, gen(5))
    logits = torch.nn.functional.one_hot(torch.full_like(b.y, 8), 9).float()  # always blank
    m = task.metrics(logits, b)
    assert m["recall_accuracy"].item() == 0.0
    assert m["accuracy"].item() == pytest.approx(30 / 40)
    assert not task.solved({k: float(v) for k, v in m.items()})
    assert task.solved({"recall_accuracy": 0.995})


def test_same_seed_same_batch_and_registry():
    a = make_task("adding", 30).sample(8, gen(9))
    b = make_task("adding", 30).sample(8, gen(9))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert set(TASKS) >= {"copy", "adding"}
    with pytest.raises(ValueError, match="needs T >= 2"):
        AddingTask(1)


def test_digits_read_one_pixel_per_step_with_a_fixed_split():
    from sklearn.datasets import load_digits

    from rnnstudy.model.tasks import DigitsTask, PermutedDigitsTask

    task, permuted = DigitsTask(64), PermutedDigitsTask(64)
    assert task.baseline == pytest.approx(math.log(10)) and task.seq_len == 64 and task.answer_steps == slice(63, 64)
    batch = task.sample(8, torch.Generator().manual_seed(0))
    assert batch.x.shape == (64, 8, 1) and batch.y.shape == (8,)
    digits = load_digits()
    images = torch.tensor(digits.data, dtype=torch.float32) / 16
    for b in range(8):  # every training sequence is a bundled image read row by row, with its label
        matches = (images == batch.x[:, b, 0]).all(dim=1).nonzero().flatten()
        assert len(matches) and batch.y[b].item() in {int(digits.target[i]) for i in matches}
    train_x, _ = task.split(validation=False)
    val_x, _ = task.split(validation=True)
    assert len(train_x) + len(val_x) == 1797 and len(val_x) == 359
    train_set = {tuple(r.tolist()) for r in train_x}
    assert sum(tuple(r.tolist()) in train_set for r in val_x) < 10  # disjoint up to duplicated images in the data
    assert torch.equal(task.validation(1000, torch.Generator()).x, DigitsTask(64).validation(1000, torch.Generator()).x)
    order = permuted.order()
    assert sorted(order.tolist()) == list(range(64)) and not torch.equal(order, torch.arange(64))
    assert torch.equal(permuted.validation(5, torch.Generator()).x[:, :, 0], task.validation(5, torch.Generator()).x[order, :, 0])


def test_memoryless_digits_loss_is_ln10():
    from rnnstudy.model.tasks import DigitsTask

    task = DigitsTask(64)
    batch = task.sample(64, torch.Generator().manual_seed(1))
    out = torch.zeros(64, 64, 10)  # uniform prediction
    assert task.loss(out, batch).item() == pytest.approx(task.baseline)


def test_digits_train_end_to_end_and_bad_T(tiny):
    import pandas as pd

    from rnnstudy.errors import ConfigError
    from rnnstudy.run.train import train

    result = train(tiny(task__name="digits_permuted", task__T=64, train__steps=10, model__cell="gru", task__val_size=64))
    assert result.status == "complete"
    accuracy = result.final["accuracy"]
    assert accuracy * 64 == pytest.approx(round(accuracy * 64))  # a count of 64 validation digits, not a soft score
    val = pd.read_parquet(result.path / "metrics.parquet").query("split == 'val' and metric == 'accuracy'")
    assert val["value"].iloc[-1] == accuracy
    with pytest.raises(ConfigError, match="fixed length; allowed: 64"):
        tiny(task__name="digits", task__T=100)


def test_a_task_missing_a_fact_fails_when_its_class_is_defined():
    from rnnstudy.model.tasks import Task, register_task

    with pytest.raises(TypeError, match=r"task Half must set .*recall_offset.*T_means.*per_sample_loss"):

        @register_task
        class Half(Task):
            name, input_size, output_size, default_threshold = "half", 1, 1, 0.1
            baseline_text, solved_metric, solved_higher_is_better = "-", "mse", False

    assert "half" not in TASKS


@pytest.mark.parametrize("name", list(TASKS))
def test_every_registered_task_declares_its_facts(name):
    from rnnstudy.model.tasks import REQUIRED

    task = make_task(name, TASKS[name].fixed_T or 10)
    assert all(hasattr(task, attr) for attr in REQUIRED) and task.recall_offset >= 0
