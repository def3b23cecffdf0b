import string

import torch

from recranker.testing import tiny_causal_lm, tiny_tokenizer
from recranker.testing.tiny_lm import WORDS


def test_answer_symbols_are_single_tokens() -> None:
    tokenizer = tiny_tokenizer()
    symbols = [*string.ascii_uppercase, *"12345", "Yes", "No", "\n", *WORDS]
    ids = [tokenizer.encode(symbol, add_special_tokens=False) for symbol in symbols]
    assert all(len(i) == 1 for i in ids), [s for s, i in zip(symbols, ids) if len(i) != 1]
    assert len({i[0] for i in ids}) == len(set(symbols))  # each its own token
    spaced = [tokenizer.encode(f" {s}", add_special_tokens=False) for s in ("A", "5", "Yes", "No")]
    assert all(len(i) == 1 for i in spaced)


def test_any_text_round_trips_without_unknowns() -> None:
    tokenizer = tiny_tokenizer()
    text = 'Toy Story (1995), rated 4/5 — "café" 3.5%!\n\tA? B; ~{x}@#$^&*_+=[]|\\<>`\'\nYes'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_special_tokens_mirror_smollm2() -> None:
    tokenizer = tiny_tokenizer()
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.bos_token == "<|im_start|>"
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id not in (tokenizer.eos_token_id, None)
    assert tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    assert tokenizer.encode("<|im_start|>user<|im_end|>", add_special_tokens=False)[::2] == [1, 2]
    assert tokenizer.encode("hi") == tokenizer.encode("hi", add_special_tokens=False)  # adds no BOS


def test_chat_template_is_chatml() -> None:
    tokenizer = tiny_tokenizer()
    messages = [{"role": "system", "content": "Rank."}, {"role": "user", "content": "A or B?"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nRank.<|im_end|>\n<|im_start|>user\nA or B?<|im_end|>\n<|im_start|>assistant\n"
    messages.append({"role": "assistant", "content": "A"})
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full == prompt + "A<|im_end|>\n"


def test_model_forward_shape_and_seeded_determinism() -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed=0)
    batch = tokenizer(["Yes or No?", "A"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits  # (B, T, V)
        again = tiny_causal_lm(tokenizer, seed=0)(**batch).logits
        other = tiny_causal_lm(tokenizer, seed=1)(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.equal(logits, again) and not torch.allclose(logits, other)
    assert model.config.vocab_size == len(tokenizer) and not model.training


def test_seeding_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_causal_lm(seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_model_generates_from_a_chat_prompt() -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer)
    messages = [{"role": "user", "content": "Yes?"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)  # (1, T + new)
    assert out.shape[0] == 1 and batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 4
