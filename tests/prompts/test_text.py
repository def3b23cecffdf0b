import numpy as np
import pytest

from recranker.prompts.text import TokenCounter, chat_text, clean_title


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Shawshank Redemption, The (1994)", "The Shawshank Redemption (1994)"),
        ("Usual Suspects, The", "The Usual Suspects"),
        ("Enfer, L' (1994)", "L'Enfer (1994)"),
        ("  Toy   Story  ", "Toy Story"),
        ('"Quoted"', "Quoted"),
        ("Thelma & Louise", "Thelma & Louise"),
    ],
)
def test_clean_title(raw, clean) -> None:
    assert clean_title(raw) == clean


def test_long_titles_are_cut_keeping_the_year() -> None:
    title = clean_title("An extremely long title about many things (2001)", max_chars=24)
    assert len(title) <= 24 and title.endswith("... (2001)")


def test_token_counter_uses_the_tokenizer_or_estimates(tokenizer) -> None:
    texts = ["Yes", "A B C", "Yes"]
    exact = TokenCounter(tokenizer).count(texts)
    expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    np.testing.assert_array_equal(exact, expected)
    estimate = TokenCounter().count(["abcdefgh", "a"])
    np.testing.assert_array_equal(estimate, [2, 1])
    assert TokenCounter(tokenizer).exact and not TokenCounter().exact


def test_chat_text_uses_the_template_and_falls_back_to_chatml(tokenizer) -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    plain = chat_text(messages, None, generation_prompt=True)
    assert plain == "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
    assert chat_text(messages, tokenizer, generation_prompt=True) == plain  # the tiny template is ChatML too


def test_the_token_counts_cache_is_bounded() -> None:
    counter = TokenCounter(None, max_cached=4)
    for n in range(50):
        assert counter.count([f"title {n}", "shared"]).tolist() == [len(f"title {n}") // 4 + (len(f"title {n}") % 4 > 0), 2]
        assert len(counter._cache) <= 4
    assert counter.count([f"t{n}" for n in range(9)]).tolist() == [1] * 9  # more texts than the cache holds
