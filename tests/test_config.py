import pytest

from recranker.config import StudyConfig, load_config, override, parse_config
from recranker.errors import ConfigError


def test_defaults_and_yaml_round_trip(tmp_path) -> None:
    cfg = StudyConfig()
    assert cfg.data.format == "ml-100k" and cfg.retrieval.candidates == 10
    assert list(cfg.retrieval.models) == ["lightgcn"]
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


def test_model_settings_are_typed_per_model(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("retrieval:\n  models:\n    pop: {}\n    lightgcn: {epochs: 3}\n")
    cfg = load_config(path)
    assert cfg.retrieval.models["lightgcn"].epochs == 3
    assert type(cfg.retrieval.models["lightgcn"]).__name__ == "LightGCNConfig"
    assert load_config(path).model_dump() == cfg.model_dump()
    assert "epochs: 3" in cfg.to_yaml()


@pytest.mark.parametrize(
    "text, message",
    [
        ("retreival: {}\n", "retreival: unknown key"),
        ("retrieval: {candidates: 0}\n", "retrieval.candidates: Input should be greater than or equal to 1"),
        ("retrieval: {models: {nope: {}}}\n", "unknown model 'nope'"),
        ("retrieval: {models: {lightgcn: {epochz: 3}}}\n", "retrieval.models.lightgcn.epochz: unknown key"),
        ("retrieval: {models: {lightgcn: {epochs: -1}}}\n",
         "retrieval.models.lightgcn.epochs: Input should be greater than or equal to 0"),
        ("retrieval: {models: {pop: {}, sasrec: {max_len: x}}}\n", "retrieval.models.sasrec.max_len: Input should be"),
        ("data: {format: parquet}\n", "data.format"),
        ("data: {liked_min: 3, disliked_max: 3}\n", "must be below liked_min"),
        ("evaluation: {ks: [0]}\n", "positive integers"),
        ("name: 'a b'\n", "name: String should match pattern"),
        ("[1, 2]\n", "must be a mapping"),
        ("data: {format: [\n", "line 2: not valid YAML"),
        ("tuning: {alro: {gamma: 0}}\n", "tuning.alro.gamma: Input should be greater than 0"),
        ("tuning: {method: qlora}\n", "tuning.method"),
        ("tuning: {tasks: [listwise, listwise]}\n", "a task is listed twice"),
        ("tuning: {method: full, merge: true}\n", "only a LoRA adapter can be merged"),
        ("tuning: {lora: {rnak: 4}}\n", "tuning.lora.rnak: unknown key"),
        ("tuning: {instructions: 100}\n", "tuning: Value error, instructions was renamed limit"),
        ("ranking: {baselines: [zero_shot]}\n", "ranking: Value error, baselines: split in two: arms"),
        ("prompts: {candidates: mixed}\n", "prompts: Value error, candidates: renamed candidate_source"),
        ("retrieval: {models: {mixgcf: {candidates: 8}}}\n", "candidates: renamed negatives"),
        ("ranking: {arms: [tuned]}\n", "the tuned arm always runs"),
        ("ranking: {arms: [few_shot]}\n", "ranking.arms.0: Input should be 'tuned', 'no_hints' or 'zero_shot'"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_override_replaces_dotted_keys_and_validates() -> None:
    cfg = override(StudyConfig(), {"retrieval.candidates": 25, "name": "x"})
    assert cfg.retrieval.candidates == 25 and cfg.name == "x"
    with pytest.raises(ConfigError, match="no section 'nope'"):
        override(cfg, {"nope.x": 1})
    with pytest.raises(ConfigError, match="retrieval.candidates"):
        override(cfg, {"retrieval.candidates": -1})
    added = override(cfg, {"retrieval.models.bpr.epochs": 3})  # a backbone the config does not list
    assert added.retrieval.models["bpr"].epochs == 3 and "lightgcn" in added.retrieval.models
    with pytest.raises(ConfigError, match="no section 'nope'"):
        override(cfg, {"retrieval.nope.x": 1})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/study.yaml")
    assert parse_config(None) == StudyConfig()


def test_a_folder_or_a_file_that_is_not_utf8_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert str(err.value) == f"{tmp_path}: is a folder, not a config file"
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: ok\ndata: {format: ml-100k}\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}, line 3: not UTF-8 text (byte 0xe9); save the config as UTF-8"


def test_every_bad_model_setting_is_reported_with_its_model() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"retrieval": {"models": {"lightgcn": {"epochs": -1}, "bpr": {"dim": 0}}}}, "s.yaml")
    lines = str(err.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["retrieval.models.lightgcn.epochs", "retrieval.models.bpr.dim"]


def test_demo_and_shipped_configs_are_valid() -> None:
    from pathlib import Path

    from recranker.config import demo_config, load_config

    demo = demo_config("somewhere", "d")
    assert demo.run_dir == Path("somewhere") / "d" and demo.ranking.test_users == 300
    assert demo.ranking.arms == [] and demo.ranking.bootstrap == 1 and demo.ranking.valid_users == 150
    configs = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        cfg = load_config(path)
        assert set(cfg.ranked_tasks) <= set(cfg.prompts.tasks)
    alro = load_config(configs[0].parent / "ml-100k-alro.yaml")
    assert alro.retrieval.candidates == 25 and alro.evaluation.graded and alro.evaluation.ks == [3, 10, 25]


def test_ranking_settings_are_checked_against_the_study() -> None:
    from recranker.config import parse_config

    with pytest.raises(ConfigError, match="ranking.tasks: listwise not in prompts.tasks"):
        parse_config({"prompts": {"tasks": ["pointwise"]}, "ranking": {"tasks": ["listwise"]}})
    with pytest.raises(ConfigError, match="ranking.weights"):
        parse_config({"ranking": {"weights": [1, 1, 1]}})
    assert parse_config({"prompts": {"tasks": ["pointwise"]}, "ranking": {"tasks": ["listwise"], "model": "x"}})


def test_time_order_is_an_input_of_the_bookcrossing_split_only() -> None:
    from recranker.data.config import DataConfig

    assert DataConfig(format="ml-100k", order="file", order_seed=3).loaded() == DataConfig(format="ml-100k").loaded()
    assert "order" not in DataConfig(format="ml-1m").loaded()
    assert DataConfig(format="bookcrossing", order="file").loaded() != DataConfig(format="bookcrossing").loaded()
    assert DataConfig(format="bookcrossing", order_seed=1).loaded() != DataConfig(format="bookcrossing").loaded()


def test_a_run_folders_config_of_an_earlier_version_is_read_with_today_s_keys(tmp_path, caplog) -> None:
    from recranker.config import migrate_config

    old = ("prompts: {candidates: mixed}\nretrieval: {models: {mixgcf: {candidates: 8}}}\n"
           "ranking: {baselines: [zero_shot, no_hints]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(old)
    with pytest.raises(ConfigError, match="renamed candidate_source"):  # a config a person writes: an error
        load_config(path)
    with caplog.at_level("INFO"):
        cfg = load_config(path, migrate=True)
    assert cfg.prompts.candidate_source == "mixed" and cfg.retrieval.models["mixgcf"].negatives == 8
    assert cfg.ranking.arms == ["no_hints", "zero_shot"] and cfg.ranking.bootstrap == 1  # no bootstrapping listed
    assert "written by an earlier recranker" in caplog.text and "ranking.baselines -> ranking.arms" in caplog.text
    data = {"ranking": {"baselines": ["bootstrapping"], "bootstrap": 5}}
    assert migrate_config(data) == ["ranking.baselines -> ranking.arms and ranking.bootstrap"]
    assert data == {"ranking": {"arms": [], "bootstrap": 5}}


def test_a_renamed_field_keeps_its_old_name_in_fingerprints() -> None:
    from recranker.artifacts import fingerprint

    cfg = parse_config({"prompts": {"candidate_source": "mixed"}, "retrieval": {"models": {"mixgcf": {"negatives": 8}}}})
    data = cfg.prompts.fingerprint_data()
    assert data["candidates"] == "mixed" and "candidate_source" not in data
    assert cfg.retrieval.fingerprint_data()["models"]["mixgcf"]["candidates"] == 8
    old = {**cfg.prompts.model_dump(mode="json"), "candidates": "mixed"}
    del old["candidate_source"]
    assert fingerprint(cfg.prompts) == fingerprint(old)  # what the stage hashed before the rename
    assert fingerprint(override(cfg, {"prompts.candidate_source": "sampled"}).prompts) != fingerprint(cfg.prompts)
