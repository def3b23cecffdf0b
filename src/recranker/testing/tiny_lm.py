"""A tiny random causal LM and its tokenizer, built in memory, for fast offline tests.

The tokenizer is a byte-level BPE like SmolLM2's: any text round-trips losslessly, and a fixed
list of merges makes the answers a ranker reads (letters A-Z, digits, "Yes", "No", newline) single
tokens, with or without a leading space. Its chat template is SmolLM2's ChatML, less the default
system message. The model is a 2-layer Llama with tied embeddings, seeded, in eval mode.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

IM_START, IM_END, PAD, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|pad|>", "<|endoftext|>"
#: SmolLM2's layout: <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2 (then a pad token of our own)
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, PAD)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
#: whole words that get their own token (each also with a leading space)
WORDS = (
    "Yes", "No", "the", "and", "of", "to", "a", "is", "in", "user", "movie", "movies", "item", "items",
    "rated", "watched", "rank", "Rank", "following", "candidate", "candidates", "Answer", "system",
    "assistant", "history", "liked", "recommend",
)  # fmt: skip
SPACE = "Ġ"  # the byte-level alphabet's spelling of " "


def _merges() -> list[tuple[str, str]]:
    """BPE merges, highest priority first: words (prefix by prefix), then space + word or symbol."""
    longest_first = sorted(WORDS, key=len, reverse=True)  # so "and" can't break up "candidate"
    merges = [(word[: end - 1], word[end - 1]) for word in longest_first for end in range(2, len(word) + 1)]
    merges += [(SPACE, word) for word in WORDS]
    merges += [(SPACE, symbol) for symbol in string.ascii_uppercase + string.digits]
    return list(dict.fromkeys(merges))  # words sharing a prefix (movie, movies) repeat merges


def _vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Special tokens first, then the 256 byte symbols, then one token per merge."""
    tokens = list(SPECIAL_TOKENS) + sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens += [left + right for left, right in merges]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A 414-token byte-level BPE tokenizer with SmolLM2's special tokens and ChatML template."""
    merges = _merges()
    backend = Tokenizer(models.BPE(vocab=_vocab(merges), merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=END_OF_TEXT,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=8192,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_causal_lm(tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0, *,
                   hidden_size: int = 32) -> LlamaForCausalLM:
    """A random 2-layer Llama (hidden 32, 2 heads) over `tokenizer`'s vocabulary, seeded, in eval
    mode; `hidden_size=128` gives heads of 64 dimensions, the smallest vLLM's CPU kernels take."""
    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()
