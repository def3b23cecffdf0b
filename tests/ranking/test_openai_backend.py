"""The OpenAI-compatible backend: reading the wanted tokens from a top-k, and (where vLLM is
installed: `.ci/vllm`) against a real vLLM OpenAI server process started here, compared with the
transformers backend on a tiny random model (fp32)."""

import math
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from recranker.ranking.backend import TransformersBackend
from recranker.ranking.openai_backend import OpenAIBackend, wanted_logprobs
from recranker.ranking.vllm_backend import vllm_available
from recranker.testing import tiny_causal_lm
from recranker.testing.backends import BackendContract

from .test_vllm_backend import rank_with_both


def test_wanted_tokens_are_read_by_id_and_a_missing_one_gets_the_upper_bound() -> None:
    top = {"token_id:7": math.log(0.5), "token_id:9": math.log(0.3)}
    out, missing = wanted_logprobs(top, [9, 7, 4], {9: "B", 7: "A", 4: "C"})
    np.testing.assert_allclose(out[:2], [math.log(0.3), math.log(0.5)])
    assert missing == 1 and out[2] == pytest.approx(math.log(0.2))  # the mass left: 0.2 < 0.3
    out, missing = wanted_logprobs({" A": -0.1, "B": -3.0}, [1, 2], {1: " A", 2: "C"})
    assert out[0] == -0.1 and missing == 1  # by text
    assert out[1] == pytest.approx(math.log(1 - math.exp(-0.1) - math.exp(-3.0)))  # the mass left, below e^-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tokenizer):
    """A vLLM OpenAI server process on a tiny model; yields (url, model folder, transformers backend)."""
    if not vllm_available():
        pytest.skip("vLLM is not installed here (.ci/vllm builds an environment with it)")
    import httpx

    folder = tmp_path_factory.mktemp("openai-model")
    model = tiny_causal_lm(tokenizer, hidden_size=128)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--port", str(port),
         "--dtype", "float32", "--max-model-len", "2048", "--max-logprobs", str(len(tokenizer))],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(1)
        else:
            pytest.fail(f"the vLLM server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        yield url, str(folder), TransformersBackend(model, tokenizer)
    finally:
        process.terminate()
        process.wait(60)


@pytest.mark.vllm
class TestOpenAIBackendContract(BackendContract):
    @pytest.fixture()
    def backend(self, server, tokenizer):
        url, folder, _ = server
        return OpenAIBackend(url, folder, tokenizer, top_logprobs=len(tokenizer))  # the whole vocabulary: exact


def test_rankings_equal_the_transformers_backends(server, tokenizer, split, renderer, hint_models) -> None:
    url, folder, reference = server
    engine = OpenAIBackend(url, folder, tokenizer, top_logprobs=len(tokenizer))  # the whole vocabulary: exact
    want, have = rank_with_both(reference, engine, split, renderer, hint_models)
    assert engine.missing_logprobs == 0
    np.testing.assert_allclose(have.point, want.point, atol=1e-3)
    np.testing.assert_allclose(have.pair_yes, want.pair_yes, atol=1e-3)
    np.testing.assert_allclose(have.list_logprob, want.list_logprob, atol=1e-3)
    np.testing.assert_array_equal(have.list_rank, want.list_rank)
    print(f"max |E[rating] diff| {np.nanmax(np.abs(have.point - want.point)):.2e}, "
          f"max |P(Yes) diff| {np.nanmax(np.abs(have.pair_yes - want.pair_yes)):.2e}")


@pytest.mark.vllm
def test_a_top_5_server_bounds_the_missing_tokens(server, tokenizer) -> None:
    url, folder, reference = server
    from .test_backend import requests

    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    engine = OpenAIBackend(url, folder, tokenizer, top_logprobs=5)
    reqs = requests()
    want, have = reference.run(reqs, ids), engine.run(reqs, ids)
    for w, h in zip(want, have):
        assert np.all(h.logprobs >= w.logprobs - 1e-3)  # exact inside the top 5, an upper bound outside it
    assert engine.missing_logprobs > 0
