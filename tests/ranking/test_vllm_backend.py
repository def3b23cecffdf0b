"""The vLLM backend against the transformers backend on a tiny random model (fp32).

These run where vLLM is importable (`.ci/vllm` builds such an environment and runs them) and skip
elsewhere: vLLM pins its own transformers, so it is not part of the main environment."""

import numpy as np
import pytest

from recranker.ranking.backend import TransformersBackend
from recranker.ranking.config import RankingConfig
from recranker.ranking.llm import LLMRanker
from recranker.ranking.vllm_backend import VLLMBackend, vllm_available
from recranker.testing import tiny_causal_lm
from recranker.testing.backends import BackendContract
from recranker.types import Rankings

from .test_backend import requests

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed here")]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("vllm-model")
    model = tiny_causal_lm(tokenizer, hidden_size=128)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TransformersBackend(model, tokenizer), VLLMBackend(folder, dtype="float32", max_model_len=2048)


class TestVLLMBackendContract(BackendContract):
    @pytest.fixture()
    def backend(self, models):
        return models[1]


def test_outputs_equal_the_transformers_backend(models, tokenizer) -> None:
    reference, engine = models
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    reqs = requests()
    expected, got = reference.run(reqs, ids), engine.run(reqs, ids)
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have.logprobs, want.logprobs, atol=1e-4)
        assert have.text == want.text
    usage = engine.usage
    assert usage.prompt_tokens == reference.usage.prompt_tokens
    assert 0 < usage.computed_tokens <= usage.prompt_tokens and usage.generated_tokens > 0


def rank_with_both(reference, engine, split, renderer, hint_models):
    """(reference outputs, engine outputs) of 5 users' 6 seeded candidates, 2 listwise passes."""
    users = split.users[:5]
    items = np.stack([np.random.default_rng(u).choice(split.n_items, 6, replace=False) for u in users])
    candidates = Rankings(users, items, -np.arange(6.0)[None].repeat(5, 0))
    config = RankingConfig(bootstrap=2, max_new_tokens=6)
    want = LLMRanker(reference, renderer, split, hint_models, config).rank(candidates, "test", progress=False)
    have = LLMRanker(engine, renderer, split, hint_models, config).rank(candidates, "test", progress=False)
    return want, have


def test_rankings_equal_the_transformers_backends(models, split, renderer, hint_models) -> None:
    want, have = rank_with_both(*models, split, renderer, hint_models)
    np.testing.assert_allclose(have.point, want.point, atol=1e-4)
    np.testing.assert_allclose(have.pair_yes, want.pair_yes, atol=1e-4)
    np.testing.assert_allclose(have.list_logprob, want.list_logprob, atol=1e-4)
    np.testing.assert_array_equal(have.list_rank, want.list_rank)
    np.testing.assert_array_equal(have.list_status, want.list_status)
