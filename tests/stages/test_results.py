import numpy as np
import pytest

from recranker.metrics import Measure
from recranker.report import system_rows
from recranker.results import BackboneResults, StudyResults, SystemResult
from recranker.stages.population import graded_gains
from recranker.stages.results import paired_test


def test_graded_gains_are_the_future_liked_ratings(split) -> None:
    gains = graded_gains(split, split.users, liked_min=4.0)
    frame = split.dataset.interactions
    for user in split.users[:10]:
        target, when = split.targets.loc[user, "test_item"], split.targets.loc[user, "test_time"]
        future = frame[(frame["user"] == user) & (frame["timestamp"] >= when) & (frame["rating"] >= 4)]
        assert gains[int(user)] == {int(i): float(r - 3) for i, r in zip(future["item"], future["rating"])}
        assert int(target) in gains[int(user)]  # the test target is a future liked item


def test_paired_test_and_significance_marks() -> None:
    a = np.zeros(50)
    assert paired_test(a, a) == 1.0
    b = np.r_[np.ones(25), np.zeros(25)]
    assert paired_test(b, a) < 0.05
    rows = [{"system": "backbone", "HR@3": 0.1, "p HR@3": None, "cond HR@3": 0.5},
            {"system": "hybrid", "HR@3": 0.2, "p HR@3": 0.01, "cond HR@3": 0.6},
            {"system": "pairwise", "HR@3": 0.12, "p HR@3": 0.3, "cond HR@3": 0.55}]
    data = {"metrics": ["HR@3"], "graded": False, "backbones": {"pop": {
        "users": 10, "covered": 2, "weights": [0.4, 0.3, 0.3], "weight_tuning": {"tuned": False}, "systems": rows}}}
    results = StudyResults.from_json(data)
    summary, hr3 = results.backbones["pop"], Measure("HR", 3)
    assert summary.system("hybrid").p[hr3] == 0.01 and summary.system("pairwise").conditional[hr3] == 0.55
    table = system_rows(summary, results.measures)
    assert table[0]["HR@3"] == "0.1000" and table[1]["HR@3"] == "0.2000 (p=0.010)*" and table[2]["HR@3"].endswith("(p=0.300)")
    assert system_rows(summary, results.measures, conditional=True)[1]["HR@3"] == "0.6000"


def test_study_results_round_trip_through_their_json(tmp_path) -> None:
    hr3, ndcg3 = Measure("HR", 3), Measure("NDCG", 3)
    backbone = BackboneResults(users=4, covered=1, weights=(0.5, 0.5, 0.0), weight_tuning={"tuned": False}, systems=[
        SystemResult("backbone", {hr3: 0.25, ndcg3: 0.1}, {hr3: None, ndcg3: None}, {hr3: 1.0, ndcg3: 0.4}),
        SystemResult("hybrid", {hr3: 0.5, ndcg3: 0.3}, {hr3: 0.2, ndcg3: 0.1}, {hr3: None, ndcg3: None},
                     {hr3: (0.25, 0.75)}, {hr3: (0.0, 0.5), ndcg3: (0.05, 0.35)})],
        listwise={"tuned": {"answers": 3}}, cost={"tuned/test": {"seconds": 1.5}})
    results = StudyResults([hr3, ndcg3], True, {"lightgcn": backbone})
    results.save(tmp_path / "summary.json")
    assert StudyResults.load(tmp_path / "summary.json") == results
    with pytest.raises(KeyError, match="no system 'pointwise'; there are backbone, hybrid"):
        backbone.system("pointwise")
