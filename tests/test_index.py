"""The committed results: every study ships its per-run table, and every number the README and the results index
print is generated from the tables or re-derived here from them with plain pandas."""

import itertools
import re
from pathlib import Path

import pandas as pd
import pytest

from rnnstudy.model.cells import CELL_LABELS
from rnnstudy.report import index

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def test_every_committed_study_ships_its_per_run_table():
    reports = [p.parent for p in RESULTS.glob("*/report.md")]
    assert reports, "no committed study"
    for folder in reports:
        table = index.DERIVED[folder.name][0] if folder.name in index.DERIVED else "runs.csv"
        assert (folder / table).exists(), f"{folder.name} has a report and no per-run table"


def test_the_readme_and_the_results_index_are_generated_from_the_tables():
    readme = (ROOT / "README.md").read_text()
    assert index.spliced(readme, RESULTS) == readme, "README's results block: rerun python -m rnnstudy.report.index"
    assert (RESULTS / "README.md").read_text() == index.index(RESULTS), "docs/results/README.md: rerun the index"


def _lines(summary: str) -> list[tuple[str, str, int, str]]:
    """(line label, memory-length text, budget, lr) for every line a summary's memory-length sentence names."""
    out = []
    for sentence in re.findall(r"memory length \(T50[^:]*\): (.*)\.$", summary, flags=re.M):
        for part in re.finditer(r"(?:^|; )([^:;]+?): (T50 [^;]*?) \(at (\d+) steps, lr ([^)]*)\)", sentence):
            out.append((part[1], part[2], int(part[3]), part[4]))
    return out


@pytest.mark.parametrize("folder", [p.parent.name for p in RESULTS.glob("*/summary.md")])
def test_each_memory_length_s_evidence_budget_and_lr_re_derive_from_the_per_run_table(folder):
    """Counted with pandas from runs.csv: each "k of n solve T" a summary prints, its budget and its lr."""
    runs = pd.read_csv(RESULTS / folder / "runs.csv", keep_default_na=False, na_values=[""])
    runs = runs[runs["stage"].fillna("") != "calibration"]
    runs = runs[runs["status"].isin(["complete", "diverged"])]
    label = (runs["cell"].map(CELL_LABELS) + " " + runs["family"] + (" " + runs["setting"].fillna("")).str.rstrip())
    lines = _lines((RESULTS / folder / "summary.md").read_text())
    assert lines, "no memory length in the summary"
    for name, text, budget, lr in lines:
        d = runs[label == name]
        assert len(d), name
        assert set(d["budget"]) == {budget} and {f"{v:g}" for v in d["lr"]} == set(lr.split(", ")), name
        for won, ran, T in re.findall(r"(\d+) of (\d+) solve (\d+)", text):
            at = d[d["T"] == int(T)]
            assert (int(at["solved"].sum()), len(at)) == (int(won), int(ran)), f"{name} at T = {T}"


def test_the_committed_prediction_scores_re_derive_from_its_per_run_table():
    from rnnstudy.report.prediction import FEATURES_CSV, scores

    folder = RESULTS / "prediction"
    rows = pd.read_csv(folder / FEATURES_CSV, keep_default_na=False, na_values=[""])
    committed = pd.read_csv(folder / "scores.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(scores(rows).reset_index(drop=True), committed, check_dtype=False)


def test_the_prediction_scores_exactly_the_study_runs_of_the_committed_phase_study():
    features = pd.read_csv(RESULTS / "prediction" / "run_features.csv")
    runs = pd.read_csv(RESULTS / "phase_cpu" / "runs.csv", keep_default_na=False, na_values=[""])
    studied = runs[runs["stage"].fillna("") != "calibration"]
    assert sorted(features["run_id"]) == sorted(studied["run_id"])


@pytest.mark.parametrize("folder", [p.parent.name for p in RESULTS.glob("*/summary.md")])
def test_what_the_last_budget_rung_added_re_derives_from_the_per_run_table(folder):
    """Counted with pandas from runs.csv: each "k of n runs first solved after step S (T ...)" of a summary."""
    runs = pd.read_csv(RESULTS / folder / "runs.csv", keep_default_na=False, na_values=[""])
    runs = runs[runs["stage"].fillna("") != "calibration"].assign(stage=lambda d: d["stage"].fillna(""))
    point = ["cell", "family", "setting", "T", "stage"]
    still = runs[~runs["status"].isin(["complete", "diverged", "pruned"])][point].drop_duplicates()
    runs = runs.merge(still, on=point, how="left", indicator=True).query("_merge == 'left_only'")  # open points: out
    label = (runs["cell"].map(CELL_LABELS) + " " + runs["family"] + (" " + runs["setting"].fillna("")).str.rstrip())
    summary = (RESULTS / folder / "summary.md").read_text()
    found = re.findall(r"(?:: |; )([^:;]+?): (\d+) of (\d+) runs first solved after step (\d+)(?: \(T ([\d, ]+)\))?",
                       summary)  # fmt: skip
    assert found, "no budget evidence in the summary"
    for name, late, ran, after, Ts in found:
        d = runs[label == name]
        steps = d["steps_to_solve"].astype(float)
        new = d[(steps > int(after)) & (steps <= d["budget"])]
        assert (len(new), len(d)) == (int(late), int(ran)), name
        assert sorted(set(new["T"])) == sorted(int(t) for t in Ts.split(", ") if t), name


def _printed_span(text: str) -> tuple[float, float] | None:
    """The T50 values a summary's printed memory length leaves open (None: exploratory or a weak bound, no verdict)."""
    if "exploratory" in text or "not a 95% bound" in text:
        return None
    if m := re.match(r"T50 > (\d+)", text):
        return float(m[1]), float("inf")
    if m := re.match(r"T50 < (\d+)", text):
        return 0.0, float(m[1])
    m = re.search(r"(?:T50 = [\d.e+]+ |95% )\[([\d.e+]+), ([\d.e+]+)\]", text)
    return float(m[1]), float(m[2])


@pytest.mark.parametrize("folder", [p.parent.name for p in RESULTS.glob("*/summary.md")])
def test_every_order_a_summary_claims_holds_on_its_printed_intervals_and_no_other(folder):
    """Each "A > B" of a summary's ordering sentence, checked on the intervals and bounds that summary prints (to their
    printed rounding), and each pair it leaves unordered overlapping there or lacking a verdict."""
    summary = (RESULTS / folder / "summary.md").read_text()
    spans = {name: _printed_span(text) for name, text, _, _ in _lines(summary)}
    sentence = re.search(r"memory lengths ordered by rule \([^)]*\): (.*)$", summary, flags=re.M)
    assert sentence, "no ordering sentence"
    listed = sentence[1].removesuffix(" No other pair is ordered.").removesuffix(".")
    claimed = {(above, below) for part in listed.split("; ") if " > " in part
               for above, belows in [part.split(" > ")] for below in belows.split(", ")}  # fmt: skip
    for a, b in itertools.permutations(spans, 2):
        if (a, b) in claimed:
            assert spans[a][0] >= spans[b][1] * 0.99, (a, b, spans[a], spans[b])
        elif spans[a] and spans[b]:
            assert spans[a][0] < spans[b][1] * 1.01, (a, b, spans[a], spans[b])


@pytest.mark.parametrize("folder", [p.parent.name for p in RESULTS.glob("*/summary.md")])
def test_each_summary_s_training_time_re_derives_from_the_per_run_table(folder):
    """The head's training time: wall_s over runs, a pack's members sharing theirs, a lower bound where any run resumed."""
    runs = pd.read_csv(RESULTS / folder / "runs.csv", keep_default_na=False, na_values=[""])
    head = (RESULTS / folder / "summary.md").read_text().splitlines()[0]
    said = re.search(r"\), (at least )?([\d.]+) (s|minutes|hours) of training summed over runs( \((\d+) runs resumed)?", head)
    assert said, head
    seconds = float(said[2]) * {"s": 1, "minutes": 60, "hours": 3600}[said[3]]
    derived = (runs["wall_s"] / runs["members"]).sum()
    assert seconds == pytest.approx(derived, rel=0.01, abs=1)
    assert bool(said[1]) == bool(said[4]) == bool(runs["resumed"].any())
    assert not said[4] or int(said[5]) == runs["resumed"].sum()


@pytest.mark.parametrize("name", list(index.SIMULATED))
def test_each_simulated_coverage_page_is_its_rows_written_out(name):
    """coverage.md and growth_coverage.md are their csv rows as the module writes them, statement included, one design
    per row of the page's table."""
    module = index.SIMULATED[name]
    rows = pd.read_csv(RESULTS / f"{name}.csv")
    page = (RESULTS / f"{name}.md").read_text()
    assert page == module.markdown(rows)
    assert len(rows) == sum(line.startswith("| ") for line in page.splitlines()) - 1  # less the header row
