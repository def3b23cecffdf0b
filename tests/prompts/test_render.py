import numpy as np
import pytest

from recranker.prompts.render import IDENTIFIERS, PromptRenderer, format_rating
from recranker.prompts.templates import load_templates
from recranker.prompts.text import TokenCounter


def history(split, user=0):
    rows = split.train[split.train["user"] == user]
    return rows["item"].to_numpy()[::-1], rows["rating"].to_numpy()[::-1]  # most recent first


def test_history_keeps_the_most_recent_that_fit_the_budget(split, tokenizer) -> None:
    items, ratings = history(split)
    counter = TokenCounter(tokenizer)
    for budget in (10, 40, 10_000):
        r = PromptRenderer(split.dataset, load_templates("movies"), counter=counter, history_tokens=budget)
        shown, _, lines = r.history("pointwise", items, ratings, None)
        assert counter.count(lines).sum() + len(lines) <= budget
        assert set(shown.tolist()) == set(items[: len(shown)].tolist())  # a prefix of the recent ones
        if budget == 10_000:
            assert len(shown) == min(len(items), r.history_items)
    assert 0 < len(PromptRenderer(split.dataset, load_templates("movies"), counter=counter,
                                  history_tokens=40).history("pointwise", items, ratings, None)[0]) < len(items)


def test_history_without_shifting_is_in_time_order_and_with_shifting_is_permuted(renderer, split) -> None:
    items, ratings = history(split)
    unshifted, _, _ = renderer.history("pointwise", items, ratings, None)
    n = len(unshifted)
    np.testing.assert_array_equal(unshifted, items[:n][::-1])
    orders = {tuple(renderer.history("pointwise", items, ratings, np.random.default_rng(s))[0]) for s in range(5)}
    assert len(orders) > 1 and all(sorted(o) == sorted(unshifted.tolist()) for o in orders)


def test_every_task_shows_the_same_history_so_prompts_share_a_prefix(renderer, split) -> None:
    from recranker.prompts.text import chat_text

    items, ratings = history(split)
    shown = {task: renderer.history(task, items, ratings, np.random.default_rng(3))[0].tolist()
             for task in ("pointwise", "pairwise", "listwise")}
    assert shown["pointwise"] == shown["pairwise"] == shown["listwise"]
    texts = [chat_text(p.messages) for p in (
        renderer.pointwise((items, ratings), 5, rng=np.random.default_rng(3)),
        renderer.pairwise((items, ratings), 5, 6, rng=np.random.default_rng(3)),
        renderer.listwise((items, ratings), np.array([5, 6, 7]), top=2, rng=np.random.default_rng(3)))]
    history_block = "\n".join(renderer.history("pointwise", items, ratings, np.random.default_rng(3))[2])
    shared = len(texts[0])
    for text in texts[1:]:
        shared = next(k for k in range(min(shared, len(text)) + 1) if k == min(shared, len(text)) or text[k] != texts[0][k])
    assert history_block in texts[0][:shared]


def test_pointwise_prompt_and_answer(renderer, split) -> None:
    prompt = renderer.pointwise(history(split), 5, rating=4.0, hint=3.64)
    user = prompt.messages[1]["content"]
    assert f'"{renderer.titles[5]}"' in user and "predicts 3.6" in user
    assert prompt.answer == "4" and prompt.with_answer()[-1] == {"role": "assistant", "content": "4"}
    assert "collaborative-filtering" not in renderer.pointwise(history(split), 5).messages[1]["content"]
    assert renderer.pointwise(history(split), 5).answer is None


def test_pairwise_prompt_and_answer(renderer, split) -> None:
    prompt = renderer.pairwise(history(split), 3, 7, first_preferred=False, hint_first=True)
    user = prompt.messages[1]["content"]
    assert f'prefer "{renderer.titles[3]}" over "{renderer.titles[7]}"' in user
    assert "prefers the first one" in user and prompt.answer == "No"
    assert "prefers the second one" in renderer.pairwise(history(split), 3, 7, hint_first=False).messages[1]["content"]


def test_listwise_prompt_and_answer(renderer, split) -> None:
    candidates = np.array([10, 11, 12, 13])
    prompt = renderer.listwise(history(split), candidates, top=3, answer_order=np.array([2, 0, 3, 1]),
                               hint_order=np.array([0, 2, 1, 3]))
    user = prompt.messages[1]["content"]
    for k, item in enumerate(candidates):
        assert f"{IDENTIFIERS[k]}. {renderer.titles[item]}" in user
    assert "ranks them A, C, B, D" in user and "best 3 first" in user
    assert prompt.answer == "C\nA\nD"


def test_listwise_identifiers_are_single_tokens(tokenizer) -> None:
    for letter in IDENTIFIERS:
        assert len(tokenizer(letter, add_special_tokens=False)["input_ids"]) == 1


def test_too_many_listwise_candidates_is_refused(renderer, split) -> None:
    with pytest.raises(ValueError, match="at most 26"):
        renderer.listwise(history(split), np.arange(27), top=3)


def test_format_rating() -> None:
    assert (format_rating(4.0), format_rating(3.5)) == ("4", "3.5")
