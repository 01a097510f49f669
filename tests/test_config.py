"""Configuration: overrides, experiment files, and bad input failing early with a clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from rnnstudy.cli import main
from rnnstudy.errors import ConfigError
from rnnstudy.run.config import RunConfig
from rnnstudy.run.device import has_cuda
from rnnstudy.run.overrides import apply_overrides, parse_overrides, read_yaml
from rnnstudy.study.experiment import load_experiment, load_run_config


def test_yaml_1_2_booleans_leave_off_and_yes_as_strings():
    assert read_yaml("name: off\ntags: [on, no]\nflag: true\nother: False") == {
        "name": "off",
        "tags": ["on", "no"],
        "flag": True,
        "other": False,
    }
    assert apply_overrides(RunConfig(), parse_overrides(["experiment=off", "train.early_stop=yes"])).experiment == "off"
    assert apply_overrides(RunConfig(), parse_overrides(["train.early_stop=yes"])).train.early_stop is True


@pytest.mark.parametrize("bad", ["model.cell=lstn", "wandb.mode=online", "train.devices=4096"])
def test_a_configuration_error_comes_back_before_torch_loads(tmp_path, bad):
    script = (
        "import sys\nfrom rnnstudy.cli import main\n"
        f"code = main(['train', {bad!r}, 'out={tmp_path}/runs'])\n"
        "print(code, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {"HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.stdout.split() == ["2", "False", "False"] or (bad == "train.devices=4096" and has_cuda()), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_overrides_parse_yaml_scalars():
    o = parse_overrides(["train.lr=1e-3", "model.num_layers=2", "train.early_stop=true", "probe.percentiles=[10,90]"])
    assert o == {"train.lr": 1e-3, "model.num_layers": 2, "train.early_stop": True, "probe.percentiles": [10, 90]}
    cfg = apply_overrides(RunConfig(), o)
    assert cfg.train.lr == 1e-3 and cfg.model.num_layers == 2 and cfg.probe.percentiles == [10.0, 90.0]


def test_experiment_defaults_then_overrides():
    cfg = load_run_config("experiments/demo.yaml", ["task.T=40"])
    assert cfg.experiment == "demo" and cfg.task.name == "adding" and cfg.task.T == 40
    assert cfg.model.hidden_size == 32


@pytest.mark.parametrize(
    "override,pieces",
    [
        ("model.cell=lstn", ["model.cell", "'lstn'", "'rnn_tanh', 'rnn_relu', 'lstm', 'gru', 'mingru' or 'lru'"]),
        ("task.name=parity", ["task.name", "'parity'", "adding, copy"]),
        ("init.recurrent=unitary", ["init.recurrent", "'unitary'", "identity", "orthogonal", "spectral"]),
        ("train.optimizer=adagrad", ["train.optimizer", "'adagrad'", "'rmsprop', 'adam' or 'sgd'"]),
        ("task.T=0", ["task.T", "0", "greater than 0"]),
        ("task.T=-5", ["task.T", "-5", "greater than 0"]),
        ("model.hidden_size=0", ["model.hidden_size", "greater than 0"]),
        ("train.steps=0", ["train.steps", "greater than 0"]),
        ("model.hidden_size=big", ["model.hidden_size", "'big'", "integer"]),
        ("model.hiden_size=3", ["model.hiden_size", "cell, hidden_size, num_layers"]),
        ("optimiser=adam", ["optimiser", "allowed"]),
    ],
)
def test_bad_values_name_key_value_and_allowed(override, pieces, tmp_path, capsys):
    code = main(["train", "experiments/demo.yaml", override, f"out={tmp_path}/runs"])
    err = capsys.readouterr().err
    assert code == 2, err
    for piece in pieces:
        assert piece in err
    assert not (tmp_path / "runs").exists()


def test_bias_scheme_must_fit_cell(tmp_path, capsys):
    code = main(["train", "experiments/demo.yaml", "model.cell=rnn_tanh", "init.bias=forget", f"out={tmp_path}/r"])
    assert code == 2
    assert "init.bias = 'forget' needs model.cell in lstm" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_missing_file_and_unknown_experiment_key(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml' not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmodel: {cell: gru, depth: 3}\n")
    with pytest.raises(ConfigError, match="model.depth = 3: unknown key; allowed: cell, hidden_size, num_layers"):
        load_experiment(bad)


def test_search_space_errors(tmp_path):
    cases = {
        "init.gain: {type: float, low: 2.0, high: 1.0}": "low = 2.0 must be below high = 1.0",
        "init.gain: {type: float, low: 0.0, high: 1.0, log: true}": "a log range needs low > 0",
        "init.recurrent: {type: categorical, choices: [orthogonal, unitary]}": "unknown recurrent init 'unitary'",
        "init.gian: {type: float, low: 0.5, high: 1.0}": "unknown key 'init.gian'",
    }
    for line, message in cases.items():
        path = tmp_path / "e.yaml"
        path.write_text(f"name: e\nsearch:\n  {line}\n")
        with pytest.raises(ConfigError, match=message):
            load_experiment(path)


def test_console_script_exit_status(tmp_path):
    proc = subprocess.run(
        cli("train", "model.cell=lstn", f"out={tmp_path}/runs"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "model.cell = 'lstn'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_train_command_writes_a_complete_run(tmp_path):
    cmd = cli(
        "train",
        "task.name=adding",
        "task.T=8",
        "model.cell=lstm",
        "model.hidden_size=4",
        "task.val_size=16",
        "train.steps=12",
        "train.val_every=6",
        "train.precision=64",
        f"out={tmp_path}/runs",
        "wandb.mode=disabled",
    )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    folder = proc.stdout.strip().splitlines()[-1].removeprefix("results: ")
    info = json.loads((Path(folder) / "run.json").read_text())
    assert info["status"] == "complete" and info["steps"] == 12 and info["config"]["task"]["T"] == 8
    assert info["config"]["train"]["precision"] == 64  # float64 is reachable from the command line
    assert "12/12" in proc.stderr + proc.stdout  # the progress bar counted the whole budget


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_accelerator_without_gpu_exit_2(tmp_path, capsys):
    assert main(["train", "train.accelerator=gpu", f"out={tmp_path}/runs"]) == 2
    assert "train.accelerator = 'gpu': no CUDA device is visible here; allowed: auto, cpu" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_readmes_example_error_is_what_the_command_prints(capsys):
    """The README's shown configuration error is the command's own line, word for word."""
    import re
    from pathlib import Path

    from rnnstudy.cli import main

    command, shown = re.search(r"\$ rnnstudy (.+)\n(rnnstudy .+)\n", Path("README.md").read_text()).groups()
    assert main(command.split()) == 2
    assert capsys.readouterr().err.strip() == shown
