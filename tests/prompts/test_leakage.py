"""The leakage test of instruction data (issue: instruction data, item 7)."""

import numpy as np
import pytest

from recranker import assets
from recranker.prompts.config import PromptsConfig
from recranker.prompts.instructions import InstructionBuilder
from recranker.prompts.leakage import check_instruction_leakage
from recranker.split import LeakageError

TASKS = ("pointwise", "pairwise", "listwise")


def records_of(pools, renderer, models, users, **settings):
    config = PromptsConfig(folds=pools.k, tokenizer=None, **settings)
    builder = InstructionBuilder(pools, renderer, models, config)
    return [r for task in TASKS for r in builder.build(task, users, progress=False)]


def test_default_instructions_are_leak_free(split, pools, renderer, hint_models) -> None:
    users = np.repeat(split.users, 3)  # every user, several folds each
    records = records_of(pools, renderer, hint_models, users)
    assert check_instruction_leakage(records, split, hint_models) == 3 * len(users)


def test_in_sample_hints_are_caught(split, pools, renderer, hint_models) -> None:
    records = records_of(pools, renderer, hint_models, split.users[:10], hints={"cross_fit": False})
    with pytest.raises(LeakageError, match="trained on the asked interaction"):
        check_instruction_leakage(records, split, hint_models)


def test_a_mentioned_target_is_caught(split, pools, renderer, hint_models) -> None:
    record = records_of(pools, renderer, hint_models, split.users[:1])[0]
    user = record["user_code"]
    for stage, key in (("valid", "history"), ("test", "item_codes")):
        bad = {**record, key: [*record[key], int(split.targets.loc[user, f"{stage}_item"])]}
        with pytest.raises(LeakageError, match=f"mentions its {stage} target"):
            check_instruction_leakage([bad], split)


def test_an_asked_item_in_the_history_is_caught(split, pools, renderer, hint_models) -> None:
    record = records_of(pools, renderer, hint_models, split.users[:1])[0]
    bad = {**record, "history": [*record["history"], record["item_codes"][0]]}
    with pytest.raises(LeakageError, match="history shows an item it asks about"):
        check_instruction_leakage([bad], split)


@pytest.mark.slow
def test_default_ml100k_split_instructions_are_leak_free() -> None:
    if not assets.is_fetched("ml-100k"):
        pytest.skip("ml-100k not fetched")
    from recranker.candidates import TrainingPools
    from recranker.data.registry import load_dataset
    from recranker.hints import HintModels, fit_fold_models
    from recranker.prompts.render import PromptRenderer
    from recranker.prompts.templates import load_templates
    from recranker.prompts.text import TokenCounter
    from recranker.retrieval import make_retriever
    from recranker.split import leave_one_out

    split = leave_one_out(load_dataset("ml-100k", assets.require("ml-100k")))
    pools = TrainingPools(split, 5, seed=0)
    fast = {"biased_mf": {"epochs": 3}, "lightgcn": {"epochs": 3, "eval_every": 3}}
    names = ("biased_mf", "lightgcn")
    full = [make_retriever(n, fast[n]).fit(split, progress=False) for n in names]
    folds = [fit_fold_models(split, pools, n, make_retriever(n, fast[n]).config, progress=False) for n in names]
    hints = HintModels(*full, *folds)
    renderer = PromptRenderer(split.dataset, load_templates("movies"), counter=TokenCounter())
    users = np.random.default_rng(0).choice(split.users, size=1000)
    records = records_of(pools, renderer, hints, users)
    assert check_instruction_leakage(records, split, hints) == 3000
