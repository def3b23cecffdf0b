"""Building a backend from a model (the study's and the server's one path)."""

import pytest
import torch

from recranker.errors import RecrankerError
from recranker.ranking.backend import BF16Linear, OneDNNLinear, TransformersBackend, use_bf16_linears, use_onednn_linears
from recranker.ranking.config import RankingConfig
from recranker.ranking.engine import make_backend, ready_for_ranking, write_model_folder
from recranker.testing import tiny_causal_lm


def test_transformers_loads_the_model_in_memory_and_never_asks_for_a_folder(tokenizer) -> None:
    def no_folder():
        raise AssertionError("the transformers backend asked for a model folder")

    model = ready_for_ranking(tiny_causal_lm(tokenizer), "float32")
    backend = make_backend(RankingConfig(batch_tokens=512), model=lambda: (tokenizer, model), folder=no_folder)
    assert isinstance(backend, TransformersBackend) and backend.model is model and not model.training


def test_ready_for_ranking_casts_and_swaps_the_float32_linears(tokenizer) -> None:
    bf16 = ready_for_ranking(tiny_causal_lm(tokenizer), "bfloat16")
    assert next(bf16.parameters()).dtype == torch.bfloat16
    assert not any(isinstance(m, OneDNNLinear) for m in bf16.modules())
    fp32 = ready_for_ranking(tiny_causal_lm(tokenizer), "float32")
    swapped = any(isinstance(m, OneDNNLinear) for m in fp32.modules())
    assert swapped == (use_onednn_linears(tiny_causal_lm(tokenizer)) > 0)  # where this torch has the kernel


def test_the_mixed_precision_rounds_only_the_mlp_blocks_products(tokenizer) -> None:
    mixed = ready_for_ranking(tiny_causal_lm(tokenizer), "bfloat16-mlp")
    rounded = {name for name, m in mixed.named_modules() if isinstance(m, BF16Linear)}
    assert rounded and all(".mlp." in name for name in rounded)
    assert {name.rsplit(".", 1)[1] for name in rounded} == {"gate_proj", "up_proj", "down_proj"}
    weights = {id(p) for name, m in mixed.named_modules() if name in rounded for p in m.parameters()}
    for name, p in mixed.named_parameters():  # all else (attention, embeddings, norms, head) float32
        assert (p.dtype == torch.bfloat16) == (id(p) in weights), name
    reference, half = tiny_causal_lm(tokenizer), ready_for_ranking(tiny_causal_lm(tokenizer), "bfloat16")
    ids = torch.tensor([tokenizer("A 1 B 5 Yes", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        exact = reference(input_ids=ids).logits[0, -1]
        got = mixed(input_ids=ids).logits[0, -1]
        whole = half(input_ids=ids).logits[0, -1].float()
    assert got.dtype == torch.float32
    assert 0 < (got - exact).abs().max() < 0.05  # rounded, not broken
    assert not torch.equal(got, whole)


def test_auto_precision_readies_the_model_as_the_machine_resolves_it(tokenizer, monkeypatch) -> None:
    import recranker.tuning.model as tuning_model

    monkeypatch.setattr(tuning_model, "native_bf16", lambda device="cpu": True)
    assert any(isinstance(m, BF16Linear) for m in ready_for_ranking(tiny_causal_lm(tokenizer), "auto").modules())
    monkeypatch.setattr(tuning_model, "native_bf16", lambda device="cpu": False)
    plain = ready_for_ranking(tiny_causal_lm(tokenizer), "auto")
    assert {p.dtype for p in plain.parameters()} == {torch.float32}
    assert not any(isinstance(m, BF16Linear) for m in plain.modules())


def test_every_linear_but_the_head_can_be_rounded(tokenizer) -> None:
    model = tiny_causal_lm(tokenizer)
    assert use_bf16_linears(model, within=None) == sum(1 for n, m in tiny_causal_lm(tokenizer).named_modules()
                                                        if isinstance(m, torch.nn.Linear) and n != "lm_head")
    assert not isinstance(model.lm_head, BF16Linear)


def test_the_mixed_precision_is_refused_by_the_engines_that_cannot_compute_it() -> None:
    with pytest.raises(ValueError, match="bfloat16-mlp is computed by the transformers backend only"):
        RankingConfig(backend="vllm", dtype="bfloat16-mlp")
    assert RankingConfig(dtype="bfloat16-mlp").dtype == "bfloat16-mlp"


def test_the_openai_backend_needs_a_url_and_an_unknown_backend_is_named() -> None:
    def never():
        raise AssertionError("loaded a model for a backend that cannot be built")

    with pytest.raises(RecrankerError, match="server's URL"):
        make_backend(RankingConfig().model_copy(update={"backend": "openai"}), model=never, folder=never)
    with pytest.raises(RecrankerError, match="unknown backend 'onnx'"):
        make_backend(RankingConfig().model_copy(update={"backend": "onnx"}), model=never, folder=never)


def test_a_model_folder_is_written_once_and_whole(tokenizer, tmp_path) -> None:
    loads = []

    def load():
        loads.append(1)
        return tokenizer, tiny_causal_lm(tokenizer)

    folder = write_model_folder(tmp_path / "merged", load)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert write_model_folder(tmp_path / "merged", load) == folder and len(loads) == 1
    assert (folder / "config.json").stat().st_mtime_ns == stamp

    def broken():
        raise RuntimeError("the merge failed")

    with pytest.raises(RuntimeError, match="merge failed"):
        write_model_folder(tmp_path / "other", broken)
    assert not (tmp_path / "other").exists()
