import numpy as np

from recranker.stages.population import graded_gains
from recranker.stages.results import paired_test
from recranker.report import system_rows


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
    summary = {"systems": [{"system": "backbone", "HR@3": 0.1, "p HR@3": None, "cond HR@3": 0.5},
                           {"system": "hybrid", "HR@3": 0.2, "p HR@3": 0.01, "cond HR@3": 0.6},
                           {"system": "pairwise", "HR@3": 0.12, "p HR@3": 0.3, "cond HR@3": 0.55}]}
    rows = system_rows(summary, ["HR@3"])
    assert rows[0]["HR@3"] == "0.1000" and rows[1]["HR@3"] == "0.2000 (p=0.010)*" and rows[2]["HR@3"].endswith("(p=0.300)")
    assert system_rows(summary, ["HR@3"], conditional=True)[1]["HR@3"] == "0.6000"
