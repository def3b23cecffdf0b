import pytest

from recranker import study
from recranker.config import StudyConfig
from recranker.testing import synthetic_frames


@pytest.fixture()
def cfg(tmp_path) -> StudyConfig:
    log, items = synthetic_frames(n_users=30, n_items=30, per_user=12)
    log.drop(columns="line").to_csv(tmp_path / "log.csv", index=False)
    items.drop(columns="line").to_csv(tmp_path / "items.csv", index=False)
    data = {"format": "csv", "path": str(tmp_path / "log.csv"), "items_path": str(tmp_path / "items.csv")}
    return StudyConfig(name="s", runs_dir=tmp_path / "runs", data=data)


def test_split_stats_are_written_with_the_split(cfg) -> None:
    split = study.prepare_split(cfg)
    written = study.read_json(study.split_stage(cfg).path / "stats.json")
    assert written == study.split_stats(split)
    assert written["split_users"] == len(split.users) and written["train_interactions"] == len(split.train)


def test_run_retrieval_uses_the_split_it_is_given(cfg, monkeypatch) -> None:
    split = study.prepare_split(cfg)

    def no_second_load(_cfg):
        raise AssertionError("the split was prepared again")

    monkeypatch.setattr(study, "prepare_split", no_second_load)
    summary = study.run_retrieval(cfg, "pop", split=split, progress=False)
    assert summary["model"] == "pop" and 0.0 <= summary["test"]["NDCG@10"] <= 1.0
