import re

import numpy as np
import pytest

from recranker.prompts.render import IDENTIFIERS
from recranker.ranking.backend import Backend, Output, Usage
from recranker.ranking.config import RankingConfig
from recranker.ranking.llm import LLMRanker, RankerOutputs
from recranker.types import Rankings


class OracleBackend(Backend):
    """Answers from the item codes named in each prompt: the user likes higher codes. Ratings peak
    at 1 + code % 5, "a over b" is Yes when a's code is higher, a listwise answer lists the shown
    candidates by descending code (its first-step log-probabilities follow the code too)."""

    def __init__(self, tokenizer, titles):
        self.tokenizer, self.usage, self.texts = tokenizer, Usage(), []
        self.code = {t: k for k, t in enumerate(titles)}

    def token_id(self, text):
        return self.tokenizer.convert_tokens_to_ids(text)

    def run(self, requests, token_ids):
        outputs = []
        for r in requests:
            self.texts.append(r)
            question = r.text.split("\n\n")[-1].split("<|im_end|>")[0]
            lp = np.full(len(token_ids), -20.0)
            if "rate" in question:
                code = self.code[re.search(r'rate "([^"]+)"', question).group(1)]
                lp[code % 5] = 0.0
                outputs.append(Output(lp))
            elif "prefer" in question:
                a, b = re.search(r'prefer "([^"]+)" over "([^"]+)"', question).groups()
                lp[5 if self.code[a] > self.code[b] else 6] = 0.0
                outputs.append(Output(lp))
            else:
                shown = re.findall(r"^([A-Z])\. (.+)$", question, flags=re.M)
                best = sorted(shown, key=lambda s: -self.code[s[1]])
                for rank, (letter, _) in enumerate(best):
                    lp[7 + IDENTIFIERS.index(letter)] = -rank
                outputs.append(Output(lp, "\n".join(letter for letter, _ in best[:5])))
        return outputs


@pytest.fixture()
def candidates(split):
    users = split.users[:4]
    items = np.stack([np.random.default_rng(u).choice(split.n_items, 6, replace=False) for u in users])
    return Rankings(users, items, -np.arange(6.0)[None].repeat(4, 0))


def test_outputs_are_aligned_with_the_candidates(split, renderer, tokenizer, hint_models, candidates) -> None:
    backend = OracleBackend(tokenizer, renderer.titles)
    ranker = LLMRanker(backend, renderer, split, hint_models, RankingConfig(bootstrap=2))
    out = ranker.rank(candidates, "test", chunk=3, progress=False)
    items = candidates.items
    np.testing.assert_allclose(out.point, 1 + items % 5, atol=1e-6)
    a, b = items[:, out.pairs[:, 0]], items[:, out.pairs[:, 1]]
    np.testing.assert_allclose(out.pair_yes[..., 0], (a > b).astype(float), atol=1e-6)
    np.testing.assert_allclose(out.pair_yes[..., 1], (b > a).astype(float), atol=1e-6)
    by_code = np.argsort(np.argsort(-items, axis=1), axis=1)  # each column's position by descending code
    for k in range(2):  # both listwise passes, whatever their shuffle
        np.testing.assert_array_equal(out.list_rank[:, k], by_code)
        np.testing.assert_array_equal(np.argsort(np.argsort(-out.list_logprob[:, k], axis=1), axis=1), by_code)
    assert (out.list_status == 0).all()
    assert not (out.list_shown[:, 0] == out.list_shown[:, 1]).all()  # the passes shuffle differently
    assert len(backend.texts) == 4 * (6 + 2 * 5 + 2)


def test_every_prompt_of_a_user_starts_with_the_same_history(split, renderer, tokenizer, hint_models, candidates) -> None:
    backend = OracleBackend(tokenizer, renderer.titles)
    LLMRanker(backend, renderer, split, hint_models, RankingConfig()).rank(candidates, "test", progress=False)
    for user in range(4):
        texts = [r.text for r in backend.texts if r.group == user]
        heads = {t.split("\n\n")[0] for t in texts}
        assert len(texts) > 10 and len(heads) == 1 and "The user rated these movies" in heads.pop()


def test_without_hint_models_no_prompt_has_a_hint(split, renderer, tokenizer, candidates) -> None:
    backend = OracleBackend(tokenizer, renderer.titles)
    LLMRanker(backend, renderer, split, None, RankingConfig(generate=False)).rank(candidates, "valid", progress=False)
    assert backend.texts and not any("collaborative-filtering" in r.text for r in backend.texts)
    assert all(r.max_new_tokens == 0 for r in backend.texts)


def test_hints_come_from_the_full_models_at_the_stage(split, renderer, tokenizer, hint_models, candidates) -> None:
    backend = OracleBackend(tokenizer, renderer.titles)
    LLMRanker(backend, renderer, split, hint_models, RankingConfig(tasks=["listwise"])).rank(
        candidates.truncate(3), "test", progress=False)
    scores = hint_models.ranking.score(candidates.users, candidates.items[:, :3], "test")
    for request in backend.texts:
        user = request.group  # the row of the user's candidates
        shown = re.findall(r"^([A-Z])\. (.+)$", request.text, flags=re.M)
        column = {renderer.titles[i]: c for c, i in enumerate(candidates.items[user, :3])}
        expected = sorted(shown, key=lambda s: -scores[user, column[s[1]]])
        assert f"ranks them {', '.join(letter for letter, _ in expected)}" in request.text


def test_outputs_round_trip_and_concatenate(tmp_path, split, renderer, tokenizer, hint_models, candidates) -> None:
    out = LLMRanker(OracleBackend(tokenizer, renderer.titles), renderer, split, hint_models,
                    RankingConfig()).rank(candidates, "test", progress=False)
    out.save(tmp_path / "o.npz")
    back = RankerOutputs.load(tmp_path / "o.npz")
    joined = RankerOutputs.concat([back.select(np.array([0, 1])), back.select(np.array([2, 3]))])
    np.testing.assert_array_equal(joined.list_rank, out.list_rank)
    np.testing.assert_allclose(joined.point, out.point)


def test_no_user_to_ask_gives_empty_outputs_of_the_right_width(split, renderer, tokenizer, hint_models, candidates) -> None:
    backend = OracleBackend(tokenizer, renderer.titles)
    none = candidates.select(slice(None, 0))
    out = LLMRanker(backend, renderer, split, hint_models, RankingConfig()).rank(none, "test", progress=False)
    assert len(out) == 0 and out.items.shape == (0, 6) and out.pairs.shape == (5, 2) and not backend.texts
    assert len(RankerOutputs.concat([out])) == 0


def test_prompts_are_exactly_what_rank_sends(split, renderer, tokenizer, hint_models, candidates) -> None:
    backend = OracleBackend(tokenizer, renderer.titles)
    ranker = LLMRanker(backend, renderer, split, hint_models, RankingConfig(bootstrap=2))
    ranker.rank(candidates, "test", chunk=4, progress=False)
    traced = ranker.prompts(candidates, "test")
    assert [text for *_, text in traced] == [r.text for r in backend.texts]
    tasks = [task for task, row, *_ in traced if row == 0]
    assert tasks == ["pointwise"] * 6 + ["pairwise"] * 10 + ["listwise"] * 2  # adjacent pairs, both orders; 2 passes
    title = renderer.titles[int(candidates.items[0, 0])]
    assert f'rate "{title}"' in traced[0][3]
