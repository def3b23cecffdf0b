"""One prompt spec for training and inference (`PromptsConfig`): the instruction records and the
LLM ranking stages render a task's prompt from the same inputs to the same text, and every
setting that can change an inference prompt or the LLM's requests is an input of the ranking
stages."""

import numpy as np
import pytest

from recranker import stages
from recranker.config import StudyConfig, override
from recranker.prompts.export import read_jsonl
from recranker.ranking.backend import Backend, Output, Usage
from recranker.stages.prompts import prompts_stage
from recranker.testing import synthetic_frames


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> StudyConfig:
    root = tmp_path_factory.mktemp("spec")
    log, items = synthetic_frames(n_users=30, n_items=30, per_user=12)
    log.drop(columns="line").to_csv(root / "log.csv", index=False)
    items.drop(columns="line").to_csv(root / "items.csv", index=False)
    data = {"format": "csv", "path": str(root / "log.csv"), "items_path": str(root / "items.csv")}
    # settings away from their defaults, so that a renderer built from anything else would differ
    return StudyConfig(name="spec", runs_dir=root / "runs", data=data,
                       retrieval={"models": {"lightgcn": {"epochs": 10, "eval_every": 5}, "biased_mf": {"epochs": 5}}},
                       sampling={"instructions": 12},
                       prompts={"tokenizer": None, "folds": 3, "listwise_top": 3, "history_tokens": 60,
                                "title_chars": 16})


def test_a_training_prompt_and_an_inference_prompt_of_the_same_inputs_are_the_same(cfg) -> None:
    stages.run_prompts(cfg, progress=False)
    split = stages.prepare_split(cfg)
    inference = cfg.renderer(split.dataset, None)  # as the ranking stage builds it (the ranked tasks)
    train = split.train
    rating = dict(zip(zip(train["user"].tolist(), train["item"].tolist()), train["rating"].tolist()))
    checked = 0
    for task in ("pointwise", "pairwise", "listwise"):
        for record in read_jsonl(prompts_stage(cfg).path / f"{task}.jsonl"):
            shown = record["history"]  # the history as the record shows it; given most recent first
            history = (np.array(shown[::-1], dtype=np.int64),
                       np.array([rating[record["user_code"], i] for i in shown[::-1]]))
            items, hint = record["item_codes"], record["hint"] and record["hint"]["value"]
            if task == "pointwise":
                prompt = inference.pointwise(history, items[0], hint=hint)
            elif task == "pairwise":
                prompt = inference.pairwise(history, items[0], items[1], hint_first=None if hint is None else hint == 0)
            else:
                prompt = inference.listwise(history, np.array(items), hint_order=None if hint is None else np.array(hint))
            assert prompt.messages == record["messages"][:2], (task, record["instance"])
            checked += 1
    assert checked == 3 * 12


@pytest.mark.parametrize("change", [
    {"ranking.pairs": "all"}, {"ranking.max_new_tokens": 8}, {"ranking.seed": 1}, {"ranking.test_users": 10},
    {"ranking.valid_users": 10}, {"ranking.generate": False}, {"ranking.tasks": ["pairwise"]},
    {"prompts.history_tokens": 64}, {"prompts.history_items": 5}, {"prompts.title_chars": 20},
    {"prompts.listwise_top": 4}, {"prompts.domain": "books"}, {"prompts.hints.ranking_model": "bpr"},
    {"prompts.hints.enabled": False},
])
def test_what_changes_the_llms_requests_reruns_the_ranking(cfg, change) -> None:
    before = stages.rank_stage(cfg, "lightgcn", "zero_shot", "test").inputs
    assert stages.rank_stage(override(cfg, change), "lightgcn", "zero_shot", "test").inputs != before


@pytest.mark.parametrize("change", [
    {"ranking.weights": [0.2, 0.3, 0.5], "ranking.tune_weights": False}, {"ranking.tune_metric": "NDCG@5"},
    {"ranking.weight_step": 0.5}, {"ranking.listwise": "generate"}, {"ranking.constants": {"listwise": 0.05}},
    {"ranking.batch_tokens": 256}, {"ranking.prefix_tokens": 512}, {"ranking.chunk_users": 4},
    {"ranking.arms": ["zero_shot"]}, {"ranking.bootstrap": 5}, {"prompts.folds": 4}, {"prompts.seed": 1}, {"prompts.shift_positions": False},
    {"prompts.hints.cross_fit": False}, {"prompts.listwise": {"liked": 2, "disliked": 2, "negatives": 4}},
])
def test_what_only_combines_or_batches_the_answers_reruns_nothing(cfg, change) -> None:
    before = stages.rank_stage(cfg, "lightgcn", "zero_shot", "test").inputs
    assert stages.rank_stage(override(cfg, change), "lightgcn", "zero_shot", "test").inputs == before


class Recorder(Backend):
    """Records the requests the ranker sends (and answers nothing in particular)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.usage, self.texts = tokenizer, Usage(), []

    def token_id(self, text):
        return self.tokenizer.convert_tokens_to_ids(text)

    def run(self, requests, token_ids):
        self.texts += [r.text for r in requests]
        return [Output(np.zeros(len(token_ids)), "A" if r.max_new_tokens else None) for r in requests]


class Unshuffled:
    """Stands in for the ranker's generators: every permutation is the identity (so the history
    and the candidates are shown in the order given)."""

    def permutation(self, n):
        return np.arange(n)


def test_the_ranker_asks_exactly_the_training_prompt(cfg, monkeypatch) -> None:
    """Through the real inference path: the LLM ranker, given a training record's history (in the
    order shown) and candidates, sends the record's prompt text, for every task."""
    from recranker.prompts.text import chat_text
    from recranker.ranking.llm import LLMRanker
    from recranker.testing import tiny_tokenizer
    from recranker.types import Rankings

    cfg = override(cfg, {"prompts.hints.enabled": False, "name": "spec-no-hints"})
    stages.run_prompts(cfg, progress=False)
    split = stages.prepare_split(cfg)
    tokenizer = tiny_tokenizer()
    train = split.train
    rating = dict(zip(zip(train["user"].tolist(), train["item"].tolist()), train["rating"].tolist()))
    for task in ("pointwise", "pairwise", "listwise"):
        backend = Recorder(tokenizer)
        ranking = override(cfg, {"ranking.tasks": [task], "ranking.arms": [], "ranking.bootstrap": 1}).ranking
        ranker = LLMRanker(backend, cfg.renderer(split.dataset, None, [task]), split, None, ranking)
        monkeypatch.setattr(ranker, "_rng", lambda *args: Unshuffled())
        for record in read_jsonl(prompts_stage(cfg).path / f"{task}.jsonl")[:4]:
            user, shown, items = record["user_code"], record["history"], record["item_codes"]
            history = (np.array(shown), np.array([rating[user, i] for i in shown]))
            monkeypatch.setattr(ranker, "history", lambda target, u, h=history: h)
            backend.texts.clear()
            ranker.rank_chunk(Rankings([user], [items], [np.zeros(len(items))]), "test")
            expected = chat_text(record["messages"][:2], tokenizer, generation_prompt=True)
            assert backend.texts[0] == expected, (task, record["instance"])


@pytest.mark.parametrize("listwise, generates", [("logits", False), ("generate", True)])
def test_validation_passes_ask_only_what_the_weight_tuning_reads(cfg, listwise, generates) -> None:
    cfg = override(cfg, {"ranking.listwise": listwise, "ranking.generate": True, "ranking.bootstrap": 3})
    valid, test = cfg.ranking.for_pass("tuned", "valid"), cfg.ranking.for_pass("tuned", "test")
    assert valid.bootstrap == 1 and valid.generate is generates
    assert test == cfg.ranking
    for arm in ("zero_shot", "no_hints"):  # only the tuned arm's test rows read bootstrap passes
        baseline = cfg.ranking.for_pass(arm, "test")
        assert baseline.bootstrap == 1 and baseline.generate is True, arm
        assert stages.rank_stage(override(cfg, {"ranking.bootstrap": 5}), "lightgcn", arm, "test").inputs == \
            stages.rank_stage(cfg, "lightgcn", arm, "test").inputs, arm
    before = stages.rank_stage(cfg, "lightgcn", "tuned", "valid").inputs
    for change in ({"ranking.bootstrap": 5}, {"ranking.arms": ["zero_shot"]}):
        assert stages.rank_stage(override(cfg, change), "lightgcn", "tuned", "valid").inputs == before, change
    assert stages.rank_stage(override(cfg, {"ranking.bootstrap": 5}), "lightgcn", "tuned", "test").inputs != \
        stages.rank_stage(cfg, "lightgcn", "tuned", "test").inputs
