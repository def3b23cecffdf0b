"""Who is evaluated: seeded samples of test users, by count or by covered users per backbone."""

from __future__ import annotations

import numpy as np
import pytest

from recranker.artifacts import fingerprint
from recranker.config import load_config, override
from recranker.metrics import covered
from recranker.ranking.config import RankingConfig
from recranker.split import Split
from recranker.stages.population import covered_sample, evaluation_population


def test_covered_sample_is_the_shortest_seeded_prefix_holding_the_wanted_covered_users() -> None:
    is_covered = np.zeros(200, dtype=bool)
    is_covered[::10] = True  # 20 covered users of 200
    rows = covered_sample(is_covered, 5, seed=3)
    assert (np.diff(rows) > 0).all()
    assert is_covered[rows].sum() == 5
    order = np.random.default_rng([7, 2, 3]).permutation(200)
    # a prefix of the seeded order, ending at its fifth covered user
    assert set(rows) == set(order[:len(rows)]) and is_covered[order[len(rows) - 1]]
    assert covered_sample(is_covered, 5, seed=3).tolist() == rows.tolist()  # seeded
    assert covered_sample(is_covered, 50, seed=3).tolist() == list(range(200))  # too few covered: everyone
    assert len(covered_sample(is_covered, 10, seed=3)) > len(rows)


def test_test_covered_gives_each_backbone_that_many_covered_test_users(tiny_run) -> None:
    cfg = override(load_config(tiny_run.parent.parent / "study.yaml"), {"ranking.test_users": None})
    split = Split.load(str(tiny_run / "split"))
    everyone, all_gains = evaluation_population(cfg, split, "bpr", "test")
    assert len(everyone) == len(split.users)
    n_covered = int(covered(everyone, all_gains).sum())
    assert n_covered >= 3  # the tiny run covers a few targets
    wanted = n_covered - 1
    population, gains = evaluation_population(override(cfg, {"ranking.test_covered": wanted}), split, "bpr", "test")
    assert covered(population, gains).sum() == wanted
    assert len(population) < len(everyone) and set(gains) == set(population.users.tolist())
    assert all(gains[int(u)] == all_gains[int(u)] for u in population.users)
    # the validation users are not affected; valid_covered samples them alike, in a sample of their own
    assert len(evaluation_population(override(cfg, {"ranking.test_covered": wanted}), split, "bpr", "valid")[0]) == \
        len(evaluation_population(cfg, split, "bpr", "valid")[0])
    cfg = override(cfg, {"ranking.valid_users": None})
    valid, valid_gains = evaluation_population(override(cfg, {"ranking.valid_covered": 2}), split, "bpr", "valid")
    assert covered(valid, valid_gains).sum() == 2 and len(valid) < len(split.users)


def test_test_covered_is_a_new_input_only_when_set_and_excludes_test_users() -> None:
    assert "test_covered" not in RankingConfig().model_dump()  # runs made before it keep their fingerprints
    assert fingerprint(RankingConfig()) != fingerprint(RankingConfig(test_covered=150))
    with pytest.raises(ValueError, match="test_users and test_covered both choose the test users"):
        RankingConfig(test_users=300, test_covered=150)
    with pytest.raises(ValueError, match="valid_users and valid_covered both choose the validation users"):
        RankingConfig(valid_users=300, valid_covered=150)
