import numpy as np
import pytest
import torch

from recranker.ranking.backend import Request, TransformersBackend, shared_prefix
from recranker.testing import tiny_causal_lm


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_causal_lm(tokenizer).eval()


def requests():
    head = "<|im_start|>system\nYou rank movies.<|im_end|>\n<|im_start|>user\nThe user rated these movies:\n- Movie {g}: 5\n\n"
    asks = ['How would the user rate "Movie 3"?', 'Would the user prefer "Movie 1" over "Movie 22"?', "Rank:\nA. x\nB. y"]
    out = []
    for g in range(3):
        for k, ask in enumerate(asks):
            text = head.format(g=g) + ask * (1 + k % 2) + "<|im_end|>\n<|im_start|>assistant\n"
            out.append(Request(text, group=g, max_new_tokens=5 if ask.startswith("Rank") else 0))
    return out


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


@pytest.mark.parametrize("share", [True, False])
def test_outputs_equal_one_full_forward_per_prompt(model, tokenizer, share) -> None:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    # small budgets: several chunks of groups and several suffix batches
    backend = TransformersBackend(model, tokenizer, batch_tokens=48, prefix_tokens=80, share_prefix=share)
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


def test_shared_prefix_leaves_every_prompt_a_token() -> None:
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix([[7, 8]]) == 1


def test_token_id_rejects_multi_token_answers(model, tokenizer) -> None:
    backend = TransformersBackend(model, tokenizer)
    assert backend.token_id("A") == tokenizer.convert_tokens_to_ids("A")
    with pytest.raises(ValueError, match="one token"):
        backend.token_id("collaborative filtering")
