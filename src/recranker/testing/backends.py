"""A public battery of tests every LLM backend should pass, as a pytest mixin.

    class TestTransformers(BackendContract):
        @pytest.fixture()
        def backend(self, tokenizer):
            return TransformersBackend(tiny_causal_lm(tokenizer).eval(), tokenizer)

The battery: one `Output` per request, in order; log-probabilities of the wanted tokens (finite,
at most 0, their probabilities summing to at most 1); generated text exactly when asked for; the
same answer for a request alone or in a batch; `token_id` as the tokenizer reads the token; the
work counted in `usage` (`Usage.since`).
"""

from __future__ import annotations

import numpy as np
import pytest

from recranker.ranking.backend import Backend, Request

#: prompts in the chat layout of the packaged templates: three histories (groups), three tasks each
HEAD = "<|im_start|>system\nYou rank movies.<|im_end|>\n<|im_start|>user\nThe user rated these movies:\n- Movie {g}: 5\n\n"
ASKS = ('How would the user rate "Movie 3"?', 'Would the user prefer "Movie 1" over "Movie 22"?', "Rank:\nA. x\nB. y")


def contract_requests() -> list[Request]:
    """Nine requests: three groups sharing a history, the listwise one generating 5 tokens."""
    out = []
    for g in range(3):
        for k, ask in enumerate(ASKS):
            text = HEAD.format(g=g) + ask * (1 + k % 2) + "<|im_end|>\n<|im_start|>assistant\n"
            out.append(Request(text, group=g, max_new_tokens=5 if ask.startswith("Rank") else 0))
    return out


class BackendContract:
    """Mixin: subclass it in a test module and give a `backend` fixture (function scope, or a
    module-scoped one passed through)."""

    #: how close a request's log-probabilities alone and in a batch must be
    batch_atol = 1e-4

    @pytest.fixture()
    def wanted(self, backend: Backend) -> list[int]:
        return [backend.token_id(text) for text in ("A", "B", "1", "5")]

    def test_one_output_per_request_in_order(self, backend: Backend, wanted) -> None:
        requests = contract_requests()
        outputs = backend.run(requests, wanted)
        assert len(outputs) == len(requests)
        for out in outputs:
            logprobs = np.asarray(out.logprobs, dtype=np.float64)
            assert logprobs.shape == (len(wanted),) and np.isfinite(logprobs).all() and (logprobs <= 1e-6).all()
            assert np.exp(logprobs).sum() <= 1 + 1e-4

    def test_text_exactly_when_generating(self, backend: Backend, wanted) -> None:
        requests = contract_requests()
        for request, out in zip(requests, backend.run(requests, wanted)):
            assert (out.text is None) == (request.max_new_tokens == 0)
            if out.text is not None:
                assert isinstance(out.text, str)

    def test_a_request_alone_or_batched_gets_the_same_answer(self, backend: Backend, wanted) -> None:
        requests = contract_requests()
        batched = backend.run(requests, wanted)
        for k in (0, 4, 8):
            alone = backend.run([requests[k]], wanted)[0]
            np.testing.assert_allclose(alone.logprobs, batched[k].logprobs, atol=self.batch_atol)

    def test_token_id_is_the_tokenizers(self, backend: Backend) -> None:
        for text in ("A", "Z", "Yes"):
            ids = backend.tokenizer(text, add_special_tokens=False).input_ids
            if len(ids) == 1:
                assert backend.token_id(text) == ids[0]

    def test_usage_counts_the_work(self, backend: Backend, wanted) -> None:
        requests = contract_requests()
        before = backend.usage.snapshot()
        backend.run(requests, wanted)
        cost = backend.usage.since(before)
        prompt = sum(len(backend.tokenizer(r.text, add_special_tokens=False).input_ids) for r in requests)
        assert cost.prompt_tokens == prompt and cost.seconds > 0
        assert 0 <= cost.computed_tokens <= prompt and cost.generated_tokens <= 5 * 3
