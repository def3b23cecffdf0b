import pytest

from recranker import stages
from recranker.artifacts import read_json
from recranker.stages import prompts as prompts_stages
from recranker.stages import retrieval as retrieval_stages
from recranker.stages.prompts import hints_stage, prepare_hints, prompts_stage
from recranker.stages.split import split_stage
from recranker.config import StudyConfig, override
from recranker.testing import synthetic_frames


@pytest.fixture()
def cfg(tmp_path) -> StudyConfig:
    log, items = synthetic_frames(n_users=30, n_items=30, per_user=12)
    log.drop(columns="line").to_csv(tmp_path / "log.csv", index=False)
    items.drop(columns="line").to_csv(tmp_path / "items.csv", index=False)
    data = {"format": "csv", "path": str(tmp_path / "log.csv"), "items_path": str(tmp_path / "items.csv")}
    return StudyConfig(name="s", runs_dir=tmp_path / "runs", data=data)


def test_split_stats_are_written_with_the_split(cfg) -> None:
    split = stages.prepare_split(cfg)
    written = read_json(split_stage(cfg).path / "stats.json")
    assert written == stages.split_stats(split)
    assert written["split_users"] == len(split.users) and written["train_interactions"] == len(split.train)


def test_run_retrieval_uses_the_split_it_is_given(cfg, monkeypatch) -> None:
    split = stages.prepare_split(cfg)

    def no_second_load(_cfg):
        raise AssertionError("the split was prepared again")

    monkeypatch.setattr(retrieval_stages, "prepare_split", no_second_load)
    summary = stages.run_retrieval(cfg, "pop", split=split, progress=False)
    assert summary["model"] == "pop" and 0.0 <= summary["test"]["NDCG@10"] <= 1.0


def instruction_cfg(cfg: StudyConfig) -> StudyConfig:
    fast = {"lightgcn": {"epochs": 10, "eval_every": 5}, "biased_mf": {"epochs": 5}}
    return override(cfg, {"retrieval.models": fast, "sampling.instructions": 40, "prompts.tokenizer": None,
                          "prompts.folds": 3})


def test_prompts_read_the_fitted_fold_models_back_and_stay_leak_free(cfg, monkeypatch) -> None:
    from recranker.candidates import TrainingPools
    from recranker.prompts.export import read_jsonl
    from recranker.prompts.leakage import check_instruction_leakage

    cfg = instruction_cfg(cfg)
    stats = stages.run_prompts(cfg, progress=False)
    assert set(stats["tasks"]) == {"pointwise", "pairwise", "listwise"}

    def no_refit(*args, **kwargs):
        raise AssertionError("the fold models were fitted again")

    monkeypatch.setattr(prompts_stages, "fit_fold_models", no_refit)
    changed = override(cfg, {"prompts.history_tokens": 64})
    assert prompts_stage(changed).inputs != prompts_stage(cfg).inputs
    stages.run_prompts(changed, progress=False)
    split = stages.prepare_split(changed)
    pools = TrainingPools(split, changed.prompts.folds, changed.prompts.seed)
    hints = prepare_hints(changed, split, pools, progress=False)
    records = [r for t in ("pointwise", "pairwise", "listwise") for r in read_jsonl(prompts_stage(changed).path / f"{t}.jsonl")]
    assert check_instruction_leakage(records, split, hints) == 120


def test_hint_switches_do_not_invalidate_the_fold_models(cfg) -> None:
    base = hints_stage(cfg).inputs
    for change in ({"prompts.hints.enabled": False}, {"prompts.hints.cross_fit": False},
                   {"prompts.shift_positions": False}, {"prompts.history_tokens": 64}):
        assert hints_stage(override(cfg, change)).inputs == base, change
    for change in ({"prompts.folds": 3}, {"prompts.seed": 1}, {"prompts.hints.ranking_model": "bpr"},
                   {"retrieval.models": {"lightgcn": {"dim": 32}}}):
        assert hints_stage(override(cfg, change)).inputs != base, change


def test_an_edited_template_reruns_the_stages_that_render_prompts(cfg, tmp_path) -> None:
    import shutil
    from importlib import resources

    shutil.copytree(str(resources.files("recranker.prompts") / "templates"), tmp_path / "t")
    cfg = override(cfg, {"prompts.templates_dir": str(tmp_path / "t"), "prompts.domain": "movies"})
    before = prompts_stage(cfg).inputs, stages.rank_stage(cfg, "lightgcn", "tuned", "test").inputs
    path = tmp_path / "t" / "movies" / "listwise.yaml"
    path.write_text(path.read_text().replace("Hint: the", "Hint: our"))
    after = prompts_stage(cfg).inputs, stages.rank_stage(cfg, "lightgcn", "tuned", "test").inputs
    assert before[0] != after[0] and before[1] != after[1]


def test_every_file_the_loader_reads_is_an_input_of_the_split(cfg) -> None:
    import pandas as pd

    split = stages.prepare_split(cfg)
    items = pd.read_csv(cfg.data.items_path, dtype=str)
    first = str(split.dataset.item_ids[0])
    items.loc[items["item"] == first, "title"] = "A Brand New Title"
    items.to_csv(cfg.data.items_path, index=False)
    assert not split_stage(cfg).done()
    assert stages.prepare_split(cfg).dataset.titles([0]) == ["A Brand New Title"]


def test_a_local_model_is_an_input_of_the_stages_that_use_it(cfg, tmp_path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg = override(cfg, {"tuning.model": str(model), "ranking.model": str(model), "prompts.tokenizer": str(model)})
    before = (prompts_stage(cfg).inputs, stages.tune_stage(cfg).inputs,
              stages.rank_stage(cfg, "lightgcn", "tuned", "test").inputs)
    (model / "config.json").write_text('{"changed": 1}')
    after = (prompts_stage(cfg).inputs, stages.tune_stage(cfg).inputs,
             stages.rank_stage(cfg, "lightgcn", "tuned", "test").inputs)
    assert all(b != a for b, a in zip(before, after))


def test_fitting_in_the_stages_ignores_the_callers_grad_mode(cfg) -> None:
    import torch

    cfg = override(cfg, {"retrieval.models": {"biased_mf": {"epochs": 2}}})
    split = stages.prepare_split(cfg)
    with torch.no_grad():  # as bench/ranking_speed.py calls it
        summary = stages.run_retrieval(cfg, "biased_mf", split=split, progress=False)
    assert summary["model"] == "biased_mf"


def test_the_ranking_model_comes_in_the_configured_dtype_and_backend(cfg, tmp_path) -> None:
    import torch

    from recranker.ranking.backend import TransformersBackend
    from recranker.testing import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    cfg = override(cfg, {"ranking.model": str(tmp_path / "lm"), "ranking.dtype": "float32"})
    half = override(cfg, {"ranking.dtype": "bfloat16"})
    models = stages.ModelCache()
    _, model = models.get(half, "tuned")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    backend = models.backend(cfg, "tuned")
    assert isinstance(backend, TransformersBackend)
    assert {p.dtype for p in backend.model.parameters()} == {torch.float32}
    assert models.backend(cfg, "tuned") is backend  # kept, its usage reset
    mixed = override(cfg, {"ranking.dtype": "bfloat16-mlp"})
    _, model = models.get(mixed, "tuned")
    assert {p.dtype for p in model.parameters()} == {torch.float32, torch.bfloat16}
    inputs = {stages.rank_stage(c, "pop", "tuned", "test").inputs
              for c in (cfg, half, mixed, override(cfg, {"ranking.backend": "vllm"}))}
    assert len(inputs) == 4  # precision and engine change the answers: inputs of the stage


def test_auto_precision_is_resolved_for_the_machine_and_its_resolution_is_the_input(cfg, tmp_path, monkeypatch) -> None:
    import recranker.tuning.model as tuning_model
    from recranker.testing import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    cfg = override(cfg, {"ranking.model": str(tmp_path / "lm")})
    auto = override(cfg, {"ranking.dtype": "auto"})
    for native, resolved in ((True, "bfloat16-mlp"), (False, "float32")):
        monkeypatch.setattr(tuning_model, "native_bf16", lambda device="cpu", native=native: native)
        assert auto.ranking.resolved_dtype("cpu") == resolved
        explicit = override(cfg, {"ranking.dtype": resolved})
        # the same answers as the explicit dtype it resolves to: the same stage inputs
        assert stages.rank_stage(auto, "pop", "tuned", "test").inputs == \
            stages.rank_stage(explicit, "pop", "tuned", "test").inputs
    monkeypatch.setattr(tuning_model, "native_bf16", lambda device="cpu": True)
    assert override(auto, {"ranking.backend": "vllm"}).ranking.resolved_dtype("cpu") == "float32"  # no MLP-only mode there
    assert override(cfg, {"ranking.dtype": "bfloat16"}).ranking.resolved_dtype("cpu") == "bfloat16"  # explicit: kept
    assert stages.model_folder(cfg, "tuned") == tmp_path / "lm"
