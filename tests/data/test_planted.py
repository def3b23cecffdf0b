"""The planted-signal generator: it plants what it claims, and its negative control plants nothing."""

from __future__ import annotations

import numpy as np
import pytest

from recranker.config import parse_config
from recranker.data.csvlog import load_csv
from recranker.data.planted import WORDS, PlantedConfig, planted_dataset, planted_frames, write_planted
from recranker.errors import ConfigError
from recranker.hints import title_word_scores
from recranker.ranking.fusion import target_auc
from recranker.retrieval import make_retriever
from recranker.split import leave_one_out
from recranker.stages.split import load_data

SMALL = {"users": 160, "shelves": 4, "items_per_shelf": 36, "per_user": 24, "words": 4}


def _word(title: str) -> str:
    return title.split()[1]


def _holds_and_liked(cfg: PlantedConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per log row: whether the title holds the user's hidden word, and whether it is liked."""
    log, items, truth = planted_frames(cfg)
    word = dict(zip(items["item"], items["title"].map(_word)))
    favourite = dict(zip(truth["user"], truth["word"]))
    holds = np.array([word[i] == favourite[u] for u, i in zip(log["user"], log["item"])])
    return holds, log["rating"].astype(int).to_numpy() >= 4


def test_liking_follows_the_hidden_word_and_exposure_does_not() -> None:
    holds, liked = _holds_and_liked(PlantedConfig(**SMALL))
    assert (liked == holds).all()  # signal 1.0: liked exactly when the title holds the user's word
    # exposure is blind to the word: the user's word is on about 1/words of what they see
    assert abs(holds.mean() - 1 / SMALL["words"]) < 0.03
    # each shelf holds every word equally often, and titles are distinct within a shelf
    items = planted_frames(PlantedConfig(**SMALL))[1]
    shelf_words = items.assign(shelf=items["genres"], word=items["title"].map(_word)).groupby(["shelf", "word"]).size()
    assert shelf_words.nunique() == 1 and items.groupby("genres")["title"].nunique().eq(SMALL["items_per_shelf"]).all()


def test_signal_knob_mixes_in_random_liking() -> None:
    holds, liked = _holds_and_liked(PlantedConfig(**SMALL, signal=0.0))
    # no signal: liking is as frequent among the user's word as among the others
    assert abs(liked[holds].mean() - liked[~holds].mean()) < 0.06


def _text_auc(permute_text: bool) -> tuple[float, float]:
    """AUC of the test target against an exposure model's other candidates, under a plain text
    reader (`title_word_scores`) and under the backbone's own order."""
    split = leave_one_out(planted_dataset(PlantedConfig(**SMALL, permute_text=permute_text)))
    backbone = make_retriever("bpr", {"epochs": 20, "positives": "interacted"}).fit(split, progress=False)
    candidates = backbone.top_m(split.users, 10, "test")
    grades = (candidates.items == split.target_items("test")[:, None]).astype(float)
    text = target_auc(title_word_scores(split, candidates.users, candidates.items, "test"), grades).mean()
    order = target_auc(-np.tile(np.arange(10.0), (len(grades), 1)), grades).mean()
    return text, order


def test_text_predicts_the_target_and_permuted_text_does_not() -> None:
    text, order = _text_auc(permute_text=False)
    assert text > 0.85 and text > order + 0.15
    text, _ = _text_auc(permute_text=True)
    assert abs(text - 0.5) < 0.08


def test_negative_control_has_the_same_log_and_permuted_titles() -> None:
    log, items, truth = planted_frames(PlantedConfig(**SMALL))
    log_neg, items_neg, truth_neg = planted_frames(PlantedConfig(**SMALL, permute_text=True))
    assert log.equals(log_neg) and truth.equals(truth_neg)
    assert sorted(items["title"]) == sorted(items_neg["title"])
    assert (items["title"] != items_neg["title"]).mean() > 0.9


def test_written_files_load_as_the_same_dataset(tmp_path) -> None:
    cfg = PlantedConfig(**SMALL, seed=3)
    paths = write_planted(tmp_path / "planted", cfg)
    read = load_csv(paths["log"], paths["items"])
    made = planted_dataset(cfg)
    assert read.interactions.equals(made.interactions)
    assert read.items.equals(made.items) and (read.item_ids == made.item_ids).all()
    truth = paths["truth"].read_text().splitlines()
    assert truth[0] == "user,shelf,word" and len(truth) == SMALL["users"] + 1 and truth[1].split(",")[2] in WORDS
    assert not list((tmp_path / "planted").glob(".*.tmp"))


def test_seeded_and_the_seed_matters() -> None:
    a, b = planted_frames(PlantedConfig(**SMALL))[0], planted_frames(PlantedConfig(**SMALL))[0]
    assert a.equals(b)
    assert not a.equals(planted_frames(PlantedConfig(**SMALL, seed=1))[0])


def test_study_config_reads_the_planted_format() -> None:
    cfg = parse_config({"data": {"format": "planted", "planted": SMALL}})
    data = load_data(cfg.data)
    assert data.name == "planted" and data.n_users == SMALL["users"]
    assert "planted" not in parse_config({}).data.loaded()  # other formats' split fingerprints unchanged
    with pytest.raises(ConfigError, match="data.path: .*the planted format generates its data"):
        parse_config({"data": {"format": "planted", "path": "x.csv"}})
    with pytest.raises(ConfigError, match=r"per_user \(40\) must be at most items_per_shelf \(36\)"):
        parse_config({"data": {"format": "planted", "planted": {**SMALL, "per_user": 40}}})


def test_shared_favourite_gives_every_user_the_same_word() -> None:
    log, items, truth = planted_frames(PlantedConfig(**SMALL, shared_favourite=True))
    assert set(truth["word"]) == {WORDS[0]}
    liked_titles = items.set_index("item").loc[log.loc[log["rating"].astype(int) >= 4, "item"], "title"]
    assert liked_titles.map(_word).eq(WORDS[0]).all()
