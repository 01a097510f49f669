"""Speed work changes no number: the same seeds give the same curves and gradient profiles as the stored reference.

The reference (tests/data/reference_runs.json) holds float64 runs. In float64 the CPU kernel paths agree to about
1e-14 relative over these 40 steps (measured under ATEN_CPU_CAPABILITY=default and avx2), so a float64 run must
match it to 1e-10 on any x86 CPU, every logged number and every g_t. float32 differs between CPUs and kernel paths
at about 1e-6 and drifts over steps (PyTorch does not promise it equal), so a float32 run is held to the float64
reference at a tolerance measured across kernel paths: the curves and g_t above float32's underflow range within
2e-4 relative (measured at most 1.3e-5). ``python tests/test_reference.py`` rewrites the reference, which is only
right when a change is meant to move the numbers (say so in the commit).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).with_name("data") / "reference_runs.json"
#: One vanilla RNN on adding (the probe reads the training backward) and one LSTM on copy (its own answer backward,
#: long enough for the answer gradient to fall far below float32's range).
CASES = {
    "rnn_tanh-adding": {"model.cell": "rnn_tanh", "task.name": "adding", "task.T": 30},
    "lstm-copy": {"model.cell": "lstm", "task.name": "copy", "task.T": 400},
}
#: float64 against the float64 reference: kernel paths agree to ~1e-14, so 1e-10 holds anywhere and still bites.
EXACT = 1e-10
#: float32 against the float64 reference: measured at most 1.3e-5 across kernel paths over 40 steps.
FLOAT32 = 2e-4
#: Below this the float32 gradient is within a few hundred of float32's subnormals (flushed to zero): not compared.
FLOAT32_FLOOR = 1e-30


def measured(case: str, out: Path, precision: int = 64) -> dict:
    """The numbers a run of the case records: training and validation curves, every probe's profile."""
    from rnnstudy.run.config import RunConfig
    from rnnstudy.run.overrides import apply_overrides
    from rnnstudy.run.store import load
    from rnnstudy.run.train import train

    cfg = apply_overrides(
        RunConfig(),
        {
            **CASES[case],
            "experiment": case,
            "out": str(out),
            "model.hidden_size": 16,
            "task.val_size": 64,
            "train.steps": 40,
            "train.batch_size": 16,
            "train.val_every": 20,
            "train.log_every": 5,
            "train.progress": False,
            "train.accelerator": "cpu",
            "train.precision": precision,
            "probe.every": 20,
            "wandb.mode": "disabled",
        },
    )
    train(cfg)
    results = load(out / case)
    metrics = results.metrics.sort_values(["split", "step", "metric"])
    grad = results.gradflow.sort_values(["step", "loss", "state", "t"])
    return {
        "metrics": [[r.split, int(r.step), r.metric, float(r.value)] for r in metrics.itertuples()],
        "gradflow": [[int(r.step), r.state, int(r.t), float(r.norm)] for r in grad.itertuples()],
    }


def _same(a: float, b: float, rel: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=1e-300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_run_matches_the_reference_on_any_cpu(case, tmp_path):
    expected, got = json.loads(REFERENCE.read_text())[case], measured(case, tmp_path)
    for kind in ("metrics", "gradflow"):
        assert [row[:-1] for row in got[kind]] == [row[:-1] for row in expected[kind]], kind
        for (*key, a), (*_, b) in zip(got[kind], expected[kind]):
            assert _same(a, b, EXACT), (kind, *key, a, b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_run_matches_the_reference_within_its_measured_tolerance(case, tmp_path):
    expected, got = json.loads(REFERENCE.read_text())[case], measured(case, tmp_path, precision=32)
    assert [row[:-1] for row in got["metrics"]] == [row[:-1] for row in expected["metrics"]]
    curves = [(g, e) for g, e in zip(got["metrics"], expected["metrics"]) if g[0] != "probe"]  # probe scalars fit the tail
    assert curves and all(_same(g[-1], e[-1], FLOAT32) for g, e in curves), [
        (g, e) for g, e in curves if not _same(g[-1], e[-1], FLOAT32)
    ][:3]
    assert [row[:-1] for row in got["gradflow"]] == [row[:-1] for row in expected["gradflow"]]
    above = [(g, e) for g, e in zip(got["gradflow"], expected["gradflow"]) if e[-1] >= FLOAT32_FLOOR]
    assert len(above) > len(got["gradflow"]) // 4
    assert all(_same(g[-1], e[-1], FLOAT32) for g, e in above), [(g, e) for g, e in above if not _same(g[-1], e[-1], FLOAT32)][:3]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps({case: measured(case, Path(tmp) / case) for case in CASES}))
    print(f"wrote {REFERENCE}", file=sys.stderr)
