"""bench/recbole_reference.py gives RecBole the settings of our model in the run (its saved
config), so a run trained with non-default settings (ML-1M) is compared at the same ones."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import recbole_reference as ref  # noqa: E402

from recranker.retrieval.lightgcn import LightGCNConfig  # noqa: E402
from recranker.retrieval.sasrec import SASRecConfig  # noqa: E402


def save_config(run: Path, ours: str, config) -> None:
    folder = run / "retrieval" / ours
    folder.mkdir(parents=True)
    torch.save({"name": ours, "config": config.model_dump(), "state": {}, "log": []}, folder / "model.pt")


def test_settings_follow_the_saved_config(tmp_path: Path) -> None:
    save_config(tmp_path, "lightgcn", LightGCNConfig(batch_size=16384, lr=3e-3, eval_every=2, patience=3, epochs=50))
    save_config(tmp_path, "sasrec", SASRecConfig(batch_size=64, lr=3e-3, patience=3))
    graph = ref.matched_settings(tmp_path, "LightGCN")
    assert graph == {"learning_rate": 3e-3, "train_batch_size": 16384, "eval_step": 2, "stopping_step": 2, "epochs": 50}
    seq = ref.matched_settings(tmp_path, "SASRec")
    # RecBole's batches are prefixes, ours windows: the batch size is not carried over
    assert seq == {"learning_rate": 3e-3, "eval_step": 1, "stopping_step": 2, "epochs": SASRecConfig().epochs}
    assert ref.describe(graph) == "learning_rate 0.003, train_batch_size 16384, eval_step 2, stopping_step 2, epochs 50"


def test_without_our_model_the_defaults_are_ours(tmp_path: Path) -> None:
    assert ref.matched_settings(tmp_path, "SGL") == {
        "learning_rate": LightGCNConfig().lr, "train_batch_size": ref.OURS["train_batch_size"],
        "eval_step": LightGCNConfig().eval_every, "stopping_step": LightGCNConfig().patience - 1}
    assert ref.matched_settings(tmp_path, "BERT4Rec")["learning_rate"] == 2e-3
