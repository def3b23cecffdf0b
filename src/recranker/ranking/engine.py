"""Building the backend that answers with one model, for the study and the server alike.

`make_backend` picks `ranking.backend` ("transformers", "vllm" or "openai") and asks for the model
only in the form that backend needs: in memory (`model()`: tokenizer and model, ready by
`ready_for_ranking`) or as a plain model folder on disk (`folder()`: vLLM loads it, an OpenAI
server serves it). `write_model_folder` writes such a folder once, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from recranker.errors import RecrankerError
from recranker.ranking.backend import Backend, TransformersBackend, use_bf16_linears, use_onednn_linears
from recranker.ranking.config import MIXED_DTYPE, RankingConfig, resolve_dtype

BACKENDS = ("transformers", "vllm", "openai")


def ready_for_ranking(model: Any, dtype: str, device: str = "cpu") -> Any:
    """`model` in eval mode on `device` in `dtype` ("float32", "bfloat16", or "bfloat16-mlp": float32
    but for the MLP blocks' products, `use_bf16_linears`; "auto": `resolve_dtype`'s for `device`),
    with oneDNN linears where that is the fast float32 path (the CPU)."""
    from recranker.tuning.model import DTYPES

    dtype = resolve_dtype(dtype, "transformers", device)
    model = model.to(device=device, dtype=torch.float32 if dtype == MIXED_DTYPE else DTYPES[dtype])
    if dtype == MIXED_DTYPE:
        use_bf16_linears(model)
    if device == "cpu" and dtype != "bfloat16":  # the float32 linears left
        use_onednn_linears(model)
    return model.eval()


def write_model_folder(folder: Path, load: Callable[[], tuple]) -> Path:
    """`folder` holding the (tokenizer, model) of `load()` as a plain transformers model folder,
    written once (atomically: a folder is either complete or absent)."""
    from recranker.artifacts import atomic_dir

    if not (folder / "config.json").is_file():
        tokenizer, model = load()
        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return folder


def make_backend(r: RankingConfig, *, model: Callable[[], tuple], folder: Callable[[], Path]) -> Backend:
    """The `r.backend` backend answering with one model: `model()` gives (tokenizer, model) ready
    for ranking, `folder()` the model's folder on disk (only the engines that load by path call it).
    The OpenAI backend asks `r.server_url` for `r.server_model`, by default the folder's path."""
    if r.backend == "transformers":
        tokenizer, loaded = model()
        return TransformersBackend(loaded, tokenizer, batch_tokens=r.batch_tokens, prefix_tokens=r.prefix_tokens,
                                   cache_tokens=r.cache_tokens)
    if r.backend == "vllm":
        from recranker.ranking.vllm_backend import VLLMBackend

        return VLLMBackend(folder(), dtype=r.resolved_dtype("cuda" if torch.cuda.is_available() else "cpu"))
    if r.backend == "openai":
        from recranker import assets
        from recranker.ranking.openai_backend import OpenAIBackend

        if not r.server_url:
            raise RecrankerError("the openai backend needs the server's URL (ranking.server_url, --server-url)")
        path = folder()
        return OpenAIBackend(r.server_url, r.server_model or str(path), assets.load_tokenizer(str(path)),
                             api_key=os.environ.get("RECRANKER_SERVER_KEY"), top_logprobs=r.top_logprobs)
    raise RecrankerError(f"unknown backend {r.backend!r}: one of {', '.join(BACKENDS)}")
