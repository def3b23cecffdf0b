"""Batch ranking over Ray workers: a local cluster of 2 workers gives the outputs of one process."""

from dataclasses import fields

import numpy as np
import pytest

from recranker.config import load_config, override
from recranker.errors import RecrankerError
from recranker.ranking.llm import RankerOutputs
from recranker.stages.rank import ModelCache, rank_users
from recranker.runs import FinishedRun
from recranker.stages.shard import expected_inputs, read_only_ranker
from recranker.types import Rankings


@pytest.fixture(scope="module")
def study(tiny_run):
    cfg = override(load_config(tiny_run.parent.parent / "study.yaml"), {"ranking.chunk_users": 8})
    candidates = Rankings.load(tiny_run / "retrieval" / "bpr" / "candidates_test.npz").select(slice(0, 20))
    return cfg, candidates


def test_two_ray_workers_give_the_outputs_of_one_process(study) -> None:
    pytest.importorskip("ray")
    cfg, candidates = study
    split = FinishedRun(cfg, cfg.run_dir / "tune" / "main").split()
    one, _ = rank_users(cfg, "tuned", "test", split, candidates, ModelCache(), on_chunk=lambda part: None,
                        progress=False)
    parts: list[RankerOutputs] = []
    two, usage = rank_users(override(cfg, {"ranking.workers": 2}), "tuned", "test", split, candidates, ModelCache(),
                            on_chunk=parts.append, progress=False)
    assert sorted(len(p) for p in parts) == [4, 8, 8]  # the chunks of one process, each saved as it came back
    for field in fields(RankerOutputs):
        np.testing.assert_array_equal(getattr(two, field.name), getattr(one, field.name), err_msg=field.name)
    assert usage["prompt_tokens"] > 0


def test_a_worker_never_tunes(study, tmp_path) -> None:
    cfg, _ = study
    other = override(cfg, {"tuning.learning_rate": 0.5})
    with pytest.raises(RecrankerError, match="tune/main finished with other inputs than expected"):
        read_only_ranker(other, "tuned", "test", expected_inputs(other))
