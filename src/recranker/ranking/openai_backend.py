"""A backend that asks any OpenAI-compatible completions server (vLLM's, llama.cpp's, ...) over HTTP.

    vllm serve runs/demo/tune/main/merged --max-logprobs 20     # or python -m vllm.entrypoints.openai.api_server
    backend = OpenAIBackend("http://127.0.0.1:8000", "runs/demo/tune/main/merged", tokenizer)

Each `Request` is one `POST /v1/completions` (temperature 0, `logprobs` = `top_logprobs`), sent
`concurrency` at a time so that the server batches them (vLLM's prefix cache then computes a user's
history once). The ranker needs the log-probabilities of specific tokens (rating digits, Yes/No,
identifiers) at the first answer position, but the API returns only the `top_logprobs` most likely
tokens there (vLLM allows up to its `--max-logprobs`, 20 by default):

- a wanted token inside the returned top-k gets its exact log-probability;
- a wanted token outside it gets an upper bound: the smaller of the lowest returned log-probability
  and the log of the probability mass the top-k leave over. It is counted in `missing_logprobs`.
  The pointwise expectation and P(Yes) renormalise over their few tokens, so a bound that is far
  below the returned ones changes them little; the listwise logits of candidates ranked low by the
  model tie at the bound (ties keep the backbone's order).

Tokens are matched by id when the server returns ids (vLLM's `return_tokens_as_token_ids`, asked
for by default), otherwise by their decoded text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from recranker.errors import RecrankerError
from recranker.ranking.backend import Backend, Output, Request, Usage


class OpenAIBackend(Backend):
    """Completions from the server at `url` serving `model`; `tokenizer` is the model's (it renders
    the prompts and names the wanted tokens). `api_key` is sent as a bearer token."""

    def __init__(self, url: str, model: str, tokenizer: Any, *, api_key: str | None = None, top_logprobs: int = 20,
                 concurrency: int = 8, timeout: float = 120.0, token_ids: bool = True) -> None:
        import httpx

        base = url.rstrip("/")
        self.endpoint = base + ("/completions" if base.endswith("/v1") else "/v1/completions")
        self.model, self.tokenizer, self.top_logprobs, self.token_ids = model, tokenizer, top_logprobs, token_ids
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.concurrency = concurrency
        self.usage = Usage()
        self.missing_logprobs = 0

    def run(self, requests: Sequence[Request], token_ids: Sequence[int]) -> list[Output]:
        started = time.perf_counter()
        wanted = [int(t) for t in token_ids]
        texts = {t: self.tokenizer.decode([t]) for t in wanted}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answers = list(pool.map(self._complete, requests))
        outputs = []
        for request, answer in zip(requests, answers):
            choice = answer["choices"][0]
            top = (choice.get("logprobs") or {}).get("top_logprobs") or [{}]
            logprobs, missing = wanted_logprobs(top[0] or {}, wanted, texts)
            self.missing_logprobs += missing
            usage = answer.get("usage") or {}
            self.usage.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.usage.generated_tokens += int(usage.get("completion_tokens", 0)) if request.max_new_tokens else 0
            outputs.append(Output(logprobs, choice.get("text", "") if request.max_new_tokens else None))
        self.usage.forward_passes += len(requests)
        self.usage.seconds += time.perf_counter() - started
        return outputs

    def _complete(self, request: Request) -> dict:
        import httpx

        body = {"model": self.model, "prompt": request.text, "max_tokens": max(1, request.max_new_tokens),
                "temperature": 0.0, "logprobs": self.top_logprobs, "stop": ["<|im_end|>"]}
        if self.token_ids:
            body["return_tokens_as_token_ids"] = True
        try:
            response = self.client.post(self.endpoint, json=body)
        except httpx.HTTPError as exc:
            raise RecrankerError(f"cannot reach the completions server at {self.endpoint}: {exc}") from None
        if response.status_code != 200:
            raise RecrankerError(f"{self.endpoint} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def close(self) -> None:
        self.client.close()


def wanted_logprobs(top: dict[str, float], wanted: Sequence[int], texts: dict[int, str]) -> tuple[np.ndarray, int]:
    """The log-probabilities of the `wanted` token ids from one position's top-k (keys "token_id:N"
    or decoded texts), and how many of them were outside the top-k (given the upper bound of the
    module docstring)."""
    by_id = {}
    for key, value in top.items():
        if key.startswith("token_id:") and key[9:].isdigit():
            by_id[int(key[9:])] = float(value)
    values = [float(v) for v in top.values()]
    left = 1.0 - sum(math.exp(v) for v in values)
    bound = min(min(values, default=0.0), math.log(left) if left > 1e-12 else -30.0)
    out, missing = np.empty(len(wanted)), 0
    for k, token in enumerate(wanted):
        if token in by_id:
            out[k] = by_id[token]
        elif not by_id and texts[token] in top:
            out[k] = float(top[texts[token]])
        else:
            out[k], missing = bound, missing + 1
    return out, missing
