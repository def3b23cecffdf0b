"""`FinishedRun`, the one reader of a finished run: each stage it reads finished with the inputs the
results were built from, else one error naming it; runs of an earlier version read as they are."""

import json
import shutil

import pytest

from recranker.errors import RecrankerError
from recranker.runs import INPUTS_FILE, FinishedRun


@pytest.fixture()
def copy(tiny_run, tmp_path):
    target = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, target)
    return target


def test_a_finished_run_records_what_its_results_were_built_from(tiny_run) -> None:
    inputs = json.loads((tiny_run / "results" / INPUTS_FILE).read_text())
    assert {"split", "tune/main", "retrieval/bpr", "retrieval/biased_mf"} <= set(inputs)
    for name, fingerprint in inputs.items():  # each is the fingerprint the stage finished with
        assert json.loads((tiny_run / name / "_stage.json").read_text())["inputs"] == fingerprint, name
    run = FinishedRun.open(tiny_run)
    assert run.expected == inputs and run.cfg.run_dir == tiny_run
    assert run.systems().selected in run.systems().available()


def test_a_stage_rebuilt_after_the_results_is_one_error(copy) -> None:
    marker = copy / "split" / "_stage.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "inputs": "0123456789abcdef"}))
    with pytest.raises(RecrankerError, match=r"split finished with other inputs than expected \(rebuilt since"):
        FinishedRun.open(copy).split()


def test_an_unfinished_stage_is_one_error(copy) -> None:
    (copy / "retrieval" / "biased_mf" / "_stage.json").unlink()
    run = FinishedRun.open(copy)
    with pytest.raises(RecrankerError, match="the retrieval/biased_mf stage has not finished"):
        run.hint_models(run.split())


def test_results_of_an_earlier_version_serve_the_paper_hybrid_with_their_weights(copy, caplog) -> None:
    for path in [copy / "results" / INPUTS_FILE, copy / "results" / "config.yaml", *copy.glob("results/*/systems.json")]:
        path.unlink()
    summary = json.loads((copy / "results" / "summary.json").read_text())
    summary["backbones"]["bpr"]["weights"] = [0.5, 0.25, 0.25]
    (copy / "results" / "summary.json").write_text(json.dumps(summary))
    with caplog.at_level("INFO"):
        systems = FinishedRun.open(copy).systems()
    assert systems.available() == ["hybrid"] and systems.selected == "hybrid"
    assert systems.hybrid.weights == (0.5, 0.25, 0.25)
    assert "no record of the stages its results were built from" in caplog.text
    assert "serving the paper's hybrid with the weights of results/summary.json" in caplog.text


def test_a_run_without_results_serves_the_configured_hybrid(copy) -> None:
    shutil.rmtree(copy / "results")
    run = FinishedRun.open(copy)
    assert run.expected == {} and run.systems().hybrid.weights == tuple(run.cfg.ranking.weights)
    with pytest.raises(RecrankerError, match="no backbone 'sasrec'; the run has bpr"):
        run.systems("sasrec")
