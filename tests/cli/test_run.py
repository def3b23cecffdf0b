"""`recranker run / rank / report` on a tiny synthetic log with a tiny random LLM."""

import json

import numpy as np
import pandas as pd
import pytest

from recranker.cli.main import main
from recranker.testing import tiny_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    tiny_study(root, retrieval={"candidates": 5, "models": {"pop": {}, "bpr": {"epochs": 3}}},
               ranking={"bootstrap": 2, "weight_step": 0.5, "max_new_tokens": 6})
    return root


def test_run_writes_every_system_and_the_report(study, capsys) -> None:
    assert main(["run", str(study / "study.yaml")]) == 0
    out = capsys.readouterr().out
    for system in ("backbone", "pointwise", "pairwise", "listwise", "listwise 1-pass", "listwise 1-pass calibrated",
                   "hybrid", "tuned hybrid", "learned fusion", "bootstrapping", "zero-shot hybrid", "hybrid w/o hints",
                   "tuned hybrid w/o hints"):
        assert f"| {system} |" in out
    run = study / "runs" / "tiny"
    for name in ("report/report.md", "report/systems.png", "report/position_bias.png", "results/summary.json",
                 "results/bpr/per_user.csv", "rank/bpr/tuned/valid/outputs.npz", "rank/pop/zero_shot/test/summary.json"):
        assert (run / name).exists(), name
    summary = json.loads((run / "results" / "summary.json").read_text())
    bpr = summary["backbones"]["bpr"]
    assert bpr["weight_tuning"]["tuned"] and len(bpr["weight_tuning"]["grid"]) == 6
    tuned = bpr["fusion"]["tuned_hybrid"]  # a0 can always fall back to the backbone's order
    assert tuned["valid_value"] >= tuned["valid_backbone"] and tuned["a0"] in (0, 0.5, 1, 2, 4, 8, 16, 1000)
    assert bpr["fusion"]["position_prior"]["tuned"]["from"] == "validation pass"
    auc = bpr["diagnostics"]["tuned"]["auc"]
    assert {"backbone", "expected rating", "pairwise wins", "listwise log-prob, calibrated", "tuned hybrid",
            "learned fusion", "rating hint", "ranking hint"} <= set(auc) and all(0 <= a["auc"] <= 1 for a in auc.values())
    # bootstrap passes (2 here) are the tuned system's alone: a baseline makes one listwise pass
    assert bpr["diagnostics"]["tuned"]["first_pick"]["answers"] == bpr["covered"] * 2
    assert bpr["diagnostics"]["zero_shot"]["first_pick"]["answers"] == bpr["covered"]
    for row in bpr["systems"]:
        lo, hi = row["ci NDCG@3"]
        assert lo <= row["NDCG@3"] <= hi and (row["diff ci NDCG@3"] is None) == (row["system"] == "backbone")
    table = pd.read_csv(run / "results" / "bpr" / "per_user.csv", index_col=0)
    assert len(table) == bpr["users"] == 40 and table["covered"].sum() == bpr["covered"]
    # users whose target is not a candidate score 0 in every system: the LLM was never asked
    rest = table[~table["covered"]]
    assert (rest.filter(like="@").to_numpy() == 0).all()
    retrieval = json.loads((run / "retrieval" / "bpr" / "metrics.json").read_text())
    backbone = next(s for s in bpr["systems"] if s["system"] == "backbone")
    assert backbone["NDCG@3"] == pytest.approx(retrieval["test"]["NDCG@3"])  # same users, same lists
    report = (run / "report" / "report.md").read_text()
    assert "## bpr" in report and "Cost per LLM pass" in report and "position_bias.png" in report
    assert "Signal per task" in report and "Listwise position bias" in report and "Tuned hybrid: weights" in report
    from recranker.ranking.llm import RankerOutputs

    # validation passes only serve the weights: one listwise pass from logits, nothing generated
    valid = RankerOutputs.load(run / "rank" / "bpr" / "tuned" / "valid" / "outputs.npz")
    test = RankerOutputs.load(run / "rank" / "bpr" / "tuned" / "test" / "outputs.npz")
    assert valid.list_rank.shape[1] == 1 and (valid.list_status == -1).all()
    assert test.list_rank.shape[1] == 2 and (test.list_status >= 0).all()


def test_a_finished_run_is_skipped_and_report_rebuilds_it(study, capsys) -> None:
    run = study / "runs" / "tiny"
    marker = run / "rank" / "bpr" / "tuned" / "test" / "_stage.json"
    before = marker.stat().st_mtime_ns
    assert main(["run", str(study / "study.yaml")]) == 0
    assert marker.stat().st_mtime_ns == before
    first = capsys.readouterr().out
    assert main(["report", "--config", str(study / "study.yaml")]) == 0
    table = first[first.index("bpr:"):first.index("study finished")].strip()
    assert table in capsys.readouterr().out


def test_given_weights_are_used_and_an_unranked_setting_is_one_message(study, capsys) -> None:
    config = str(study / "study.yaml")
    assert main(["report", "--config", config, "--weights", "1,0,0"]) == 0
    capsys.readouterr()
    summary = json.loads((study / "runs" / "tiny" / "results" / "summary.json").read_text())
    assert summary["backbones"]["pop"]["weights"] == [1.0, 0.0, 0.0]
    hybrid = next(s for s in summary["backbones"]["pop"]["systems"] if s["system"] == "hybrid")
    point = next(s for s in summary["backbones"]["pop"]["systems"] if s["system"] == "pointwise")
    assert hybrid["NDCG@3"] == point["NDCG@3"]
    assert main(["report", "--config", config, "--set", "ranking.pairs=all"]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert main(["report", "--config", config, "--weights", "0.5,0.2"]) == 2
    assert "weights" in capsys.readouterr().err


def test_an_interrupted_ranking_resumes_from_its_saved_users(study, monkeypatch, capsys) -> None:
    from recranker.ranking import llm

    config = str(study / "study.yaml")
    args = ["rank", "--config", config, "--set", "ranking.seed=1", "--set", "ranking.arms=[]", "--set", "ranking.bootstrap=1",
            "--set", "ranking.tune_weights=false", "--set", "retrieval.models={bpr: {epochs: 3}}",
            "--set", "ranking.chunk_users=2"]
    calls = {"n": 0}
    original = llm.LLMRanker.rank_chunk

    def flaky(self, candidates, stage):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, candidates, stage)

    monkeypatch.setattr(llm.LLMRanker, "rank_chunk", flaky)
    assert main(args) == 130
    folder = study / "runs" / "tiny" / "rank" / "bpr" / "tuned" / "test"
    assert [p.name for p in folder.glob("part-*.npz")] == ["part-00000.npz"] and not (folder / "outputs.npz").exists()
    assert main(args) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed"] and summary["users_this_run"] == summary["users"] - 2
    out = llm.RankerOutputs.load(folder / "outputs.npz")
    assert np.all(np.diff(out.users) > 0) and not list(folder.glob("part-*.npz"))


def test_the_tuned_model_is_merged_once_into_a_plain_model_folder(study) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recranker import stages
    from recranker.config import load_config, override

    cfg = override(load_config(study / "study.yaml"), {"ranking.dtype": "float32"})  # compared exactly below
    folder = stages.model_folder(cfg, "tuned")  # tunes first when the stage is not done
    assert folder == stages.tune_stage(cfg).path / "merged"
    assert stages.model_folder(cfg, "zero_shot") == study / "tiny-lm"  # an untuned folder serves as it is
    tokenizer, merged = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    _, adapted = stages.ModelCache().get(cfg, "tuned")
    ids = tokenizer("Rank these movies", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert stages.model_folder(cfg, "tuned") == folder and (folder / "config.json").stat().st_mtime_ns == stamp
