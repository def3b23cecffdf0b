import numpy as np
import pytest
import torch

from recranker.ranking.backend import (MIN_STEM, OneDNNLinear, Request, TransformersBackend, _Group, shared_prefix,
                                      use_onednn_linears)
from recranker.testing import tiny_causal_lm
from recranker.testing.backends import HEAD, BackendContract, contract_requests


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_causal_lm(tokenizer).eval()


requests = contract_requests


class TestTransformersBackendContract(BackendContract):
    @pytest.fixture()
    def backend(self, tokenizer):
        return TransformersBackend(tiny_causal_lm(tokenizer).eval(), tokenizer, batch_tokens=48, prefix_tokens=80)


class TestPaddedTransformersBackendContract(BackendContract):
    @pytest.fixture()
    def backend(self, tokenizer):
        backend = TransformersBackend(tiny_causal_lm(tokenizer).eval(), tokenizer)
        backend.pad_multiple = 32  # as the server runs it
        return backend


def reference(model, tokenizer, request, ids):
    x = tokenizer(request.text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(model(x).logits[0, -1].float(), -1)[ids].numpy()
        text = None
        if request.max_new_tokens:
            generated = model.generate(x, max_new_tokens=request.max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)[0, x.shape[1]:].tolist()
            text = tokenizer.decode(generated, skip_special_tokens=True)
    return logprobs, text


@pytest.mark.parametrize("share, pad", [(True, 1), (False, 1), (True, 32)])
def test_outputs_equal_one_full_forward_per_prompt(model, tokenizer, share, pad) -> None:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    # small budgets: several chunks of groups and several suffix batches; pad: widths padded to a multiple
    backend = TransformersBackend(model, tokenizer, batch_tokens=48, prefix_tokens=80, share_prefix=share)
    backend.pad_multiple = pad
    reqs = requests()
    outputs = backend.run(reqs, ids)
    for request, out in zip(reqs, outputs):
        logprobs, text = reference(model, tokenizer, request, ids)
        np.testing.assert_allclose(out.logprobs, logprobs, atol=1e-5)
        assert out.text == text
    usage = backend.usage
    assert usage.prompt_tokens == sum(len(tokenizer(r.text, add_special_tokens=False).input_ids) for r in reqs)
    if share:  # each group's prefix computed once
        assert usage.computed_tokens < 0.7 * usage.prompt_tokens
    else:
        assert usage.computed_tokens == usage.prompt_tokens
    assert usage.generated_tokens > 0 and usage.seconds > 0


def stem_requests() -> list[Request]:
    """Per group (three histories): four pointwise-like questions opening alike, two pairwise-like
    ones opening alike, one alone and one generating listwise question."""
    asks = [f'How would the user rate "Movie {m}"?' for m in (3, 14, 15, 9)]
    asks += [f'Would the user prefer "Movie {a}" over "Movie {b}"?' for a, b in ((1, 22), (22, 1))]
    asks += ["Rate it.", "Rank:\nA. x\nB. y"]
    return [Request(HEAD.format(g=g) + ask + "<|im_end|>\n<|im_start|>assistant\n", group=g,
                    max_new_tokens=5 if ask.startswith("Rank") else 0) for g in range(3) for ask in asks]


@pytest.mark.parametrize("pad", [1, 32])
def test_stems_are_computed_once_and_the_answers_stay_those_of_full_forwards(model, tokenizer, pad) -> None:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    reqs = stem_requests()
    usage = {}
    for stems in (True, False):
        backend = TransformersBackend(model, tokenizer, batch_tokens=48, prefix_tokens=80, share_stems=stems)
        backend.pad_multiple = pad
        for request, out in zip(reqs, backend.run(reqs, ids)):
            logprobs, text = reference(model, tokenizer, request, ids)
            np.testing.assert_allclose(out.logprobs, logprobs, atol=1e-5)
            assert out.text == text
        usage[stems] = backend.usage
    # what the stems save: each stem computed once instead of once per suffix that opens with it
    encoded = [tokenizer(r.text, add_special_tokens=False).input_ids for r in reqs]
    saved = 0
    for g in range(3):
        rows = [e for e, r in zip(encoded, reqs) if r.group == g]
        p = shared_prefix(rows)
        for sub in (rows[:4], rows[4:6]):
            n = shared_prefix([e[p:] for e in sub])
            assert n >= MIN_STEM  # the questions open alike
            saved += (len(sub) - 1) * n
    assert usage[False].computed_tokens - usage[True].computed_tokens == saved
    assert usage[True].prompt_tokens == usage[False].prompt_tokens


@pytest.mark.parametrize("stems", [False, True])
def test_suffix_and_stem_passes_keep_their_rows_cached_tokens_within_cache_tokens(model, tokenizer, monkeypatch,
                                                                                   stems) -> None:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    reqs = stem_requests()
    passes = {}
    for budget in (1 << 20, 160):
        backend = TransformersBackend(model, tokenizer, batch_tokens=256, prefix_tokens=80, cache_tokens=budget,
                                      share_stems=stems)
        shapes = []
        forward = backend._forward
        monkeypatch.setattr(backend, "_forward", lambda ids_, mask, positions, cache: (
            shapes.append((ids_.shape, mask.shape)), forward(ids_, mask, positions, cache))[1])
        for request, out in zip(reqs, backend.run(reqs, ids)):
            logprobs, text = reference(model, tokenizer, request, ids)
            np.testing.assert_allclose(out.logprobs, logprobs, atol=1e-5)
            assert out.text == text
        # suffix and stem passes: several new tokens on a cache (prefix passes have none, decoding adds one)
        suffix_passes = [(i[0], m[1]) for i, m in shapes if 1 < i[1] < m[1]]
        passes[budget] = suffix_passes
    assert any(rows * width > 160 for rows, width in passes[1 << 20])  # the default lets passes be larger
    assert all(rows == 1 or rows * width <= 160 for rows, width in passes[160])
    assert len(passes[160]) > len(passes[1 << 20])


def test_stems_group_only_suffixes_of_one_group_that_open_alike() -> None:
    suffix = {0: [5, 6, 7, 1], 1: [5, 6, 8], 2: [5, 9], 3: [4, 6], 4: [5, 6, 7, 2], 5: [7]}
    rows = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 4), (1, 5)]  # (group, request)
    # group 0: requests 0-2 open with 5 but share one token only (5, then 6 / 6 / 9): below MIN_STEM
    assert MIN_STEM == 2 and TransformersBackend._stems(rows, suffix) == []
    rows = [(0, 0), (0, 1), (0, 3), (1, 4), (1, 5)]
    assert TransformersBackend._stems(rows, suffix) == [(0, [5, 6], [0, 1])]  # 4 alone in group 1


def test_shared_prefix_leaves_every_prompt_a_token() -> None:
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix([[7, 8]]) == 1


def test_token_id_rejects_multi_token_answers(model, tokenizer) -> None:
    backend = TransformersBackend(model, tokenizer)
    assert backend.token_id("A") == tokenizer.convert_tokens_to_ids("A")
    with pytest.raises(ValueError, match="one token"):
        backend.token_id("collaborative filtering")


def test_prefix_chunks_go_longest_first_within_the_padded_budget(model, tokenizer) -> None:
    backend = TransformersBackend(model, tokenizer, prefix_tokens=100)
    groups = [_Group(list(range(n))) for n in (10, 60, 30, 45, 5, 20)]
    chunks = backend._chunks(groups)
    lengths = [len(g.prefix) for chunk in chunks for g in chunk]
    assert sorted(lengths) == [5, 10, 20, 30, 45, 60] and lengths == sorted(lengths, reverse=True)
    for chunk in chunks:  # the batch is left-padded to its first (longest) prefix
        assert len(chunk) == 1 or len(chunk) * len(chunk[0].prefix) <= 100
    assert [len(c) for c in chunks] == [1, 2, 3]  # 60 | 45 30 | 20 10 5


def test_onednn_linears_answer_as_the_plain_model(tokenizer) -> None:
    plain, fast = tiny_causal_lm(tokenizer), tiny_causal_lm(tokenizer)
    replaced = use_onednn_linears(fast)
    if not torch.backends.mkldnn.is_available():
        assert replaced == 0
        return
    assert replaced == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer and the head
    assert not any(type(m) is torch.nn.Linear for m in fast.modules())
    assert fast.lm_head.weight is fast.model.embed_tokens.weight  # tied weights stay tied
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    reqs = requests()
    expected = TransformersBackend(plain, tokenizer).run(reqs, ids)
    got = TransformersBackend(fast, tokenizer).run(reqs, ids)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b.logprobs, a.logprobs, atol=1e-4)
        assert b.text == a.text
    assert isinstance(fast.lm_head, OneDNNLinear)


def test_a_bfloat16_model_answers_close_to_float32(tokenizer) -> None:
    plain, half = tiny_causal_lm(tokenizer), tiny_causal_lm(tokenizer).to(torch.bfloat16)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    reqs = [r for r in requests() if not r.max_new_tokens]
    expected = TransformersBackend(plain, tokenizer).run(reqs, ids)
    got = TransformersBackend(half, tokenizer).run(reqs, ids)
    difference = max(float(np.abs(a.logprobs - b.logprobs).max()) for a, b in zip(expected, got))
    assert 0 < difference < 0.05  # rounded, not broken
    assert all(b.logprobs.dtype == np.float32 for b in got)
