import numpy as np
import pytest

from recranker.prompts.config import PromptsConfig
from recranker.prompts.instructions import InstructionBuilder


@pytest.fixture(scope="module")
def records(pools, split, hint_models, tokenizer):
    """A few instruction records of each task over the synthetic split."""
    from recranker.prompts.render import PromptRenderer
    from recranker.prompts.templates import load_templates
    from recranker.prompts.text import TokenCounter

    renderer = PromptRenderer(split.dataset, load_templates("movies"), counter=TokenCounter(tokenizer),
                              history_tokens=60, history_items=8)
    users = np.random.default_rng(1).choice(split.users, size=12)
    config = PromptsConfig(folds=pools.k, tokenizer=None)
    builder = InstructionBuilder(pools, renderer, hint_models, config)
    return {task: builder.build(task, users, progress=False) for task in ("pointwise", "pairwise", "listwise")}
