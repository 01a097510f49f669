"""run.json's typed contract: what a run writes reads back as the same record, a file off the contract is damaged by
name, a hand run's key is what it always was, and reading the store or writing a report needs no torch."""

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from rnnstudy.run.config import RunConfig
from rnnstudy.run.record import RunInfo, StudyFacts
from rnnstudy.run.records import run_key
from rnnstudy.run.store import load, read_info
from rnnstudy.run.train import train


def test_a_runs_file_is_its_typed_record_and_the_run_table_reads_it(tiny):
    from rnnstudy.report import frames

    cfg = tiny(train__steps=10)
    result = train(cfg)
    text = json.loads((result.path / "run.json").read_text())
    info = read_info(result.path)
    assert info.as_json() == text  # one contract: the file is the model's dump, and nothing else
    assert info.config == cfg and info.meta == StudyFacts() and text["meta"] == {} and info.launched_by is None
    assert (info.status, info.steps, info.steps_to_solve) == (result.status, result.steps, result.steps_to_solve)
    row = frames.run_table(load(cfg.out)).iloc[0]
    assert (row["cell"], row["T"], row["budget"], row["lr"]) == (cfg.model.cell, cfg.task.T, cfg.train.steps, cfg.train.lr)
    assert row["final_norm_loss"] == pytest.approx(info.final["norm_loss"]) and row["members"] == 1


@pytest.mark.parametrize(("field", "value"), [("steps", "many"), ("unknown", 1), ("meta", {"trial": "t3"})])
def test_a_file_off_the_contract_is_refused_by_its_field(tiny, field, value):
    result = train(tiny(train__steps=5))
    text = json.loads((result.path / "run.json").read_text())
    (result.path / "run.json").write_text(json.dumps({**text, field: value}))
    with pytest.raises(ValidationError, match=field if field != "meta" else "trial"):
        read_info(result.path)


def test_study_facts_write_and_key_only_what_the_study_gave():
    cfg = RunConfig()
    given = {"experiment": "e", "stage": "bracket", "T": 40, "trial": 3, "params": {"init.gain": 1.1}, "seed": 5}
    facts = StudyFacts.model_validate(given)
    assert facts.given() == given  # unset facts are not written, so a run's key is the key it always had
    assert run_key(cfg, facts.given()) == run_key(cfg, given) and run_key(cfg, StudyFacts().given()) == run_key(cfg, None)


def test_reading_the_store_and_writing_a_report_import_no_torch():
    code = ("import sys, rnnstudy.run.store, rnnstudy.run.records, rnnstudy.study.experiment, rnnstudy.report.build, "
            "rnnstudy.report.index; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_record_model_is_the_run_json_schema():
    schema = RunInfo.model_json_schema()
    assert {"key", "status", "config", "meta", "final", "steps_to_solve"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
