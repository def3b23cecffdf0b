"""A finished tiny run (synthetic log, tiny random LLM) for the serving tests."""

import pytest
import yaml

from recranker.cli.main import main
from recranker.testing import synthetic_frames, tiny_causal_lm, tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The folder of a finished `recranker run` on 40 synthetic users (items i0..i39, users u0..u39)."""
    root = tmp_path_factory.mktemp("serve")
    log, items = synthetic_frames(n_users=40, n_items=40, per_user=16)
    log.drop(columns="line").to_csv(root / "log.csv", index=False)
    items.drop(columns="line").to_csv(root / "items.csv", index=False)
    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer).save_pretrained(root / "tiny-lm")
    tokenizer.save_pretrained(root / "tiny-lm")
    config = {
        "name": "tiny", "runs_dir": str(root / "runs"),
        "data": {"format": "csv", "path": str(root / "log.csv"), "items_path": str(root / "items.csv")},
        "retrieval": {"candidates": 5, "models": {"bpr": {"epochs": 3}}},
        "evaluation": {"ks": [3, 5]},
        "sampling": {"strategy": "uniform", "instructions": 6},
        "prompts": {"folds": 2, "tokenizer": str(root / "tiny-lm"), "hints": {"ranking_model": "bpr"}},
        "tuning": {"model": str(root / "tiny-lm"), "max_steps": 2, "batch_size": 4},
        "ranking": {"baselines": [], "weight_step": 0.5, "generate": False, "test_users": 8, "valid_users": 8},
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(root / "study.yaml")]) == 0
    return root / "runs" / "tiny"


@pytest.fixture(scope="session")
def reranker(tiny_run):
    from recranker.serve import Reranker

    return Reranker.load(tiny_run)
