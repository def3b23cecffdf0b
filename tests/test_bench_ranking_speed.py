"""bench/ranking_speed.py: its bench-only grouped-head attention answers bitwise as transformers'
SDPA, and each row is set against the machine peak of its own precision."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import ranking_speed as bench  # noqa: E402

from recranker.ranking.backend import TransformersBackend  # noqa: E402
from recranker.testing import tiny_causal_lm  # noqa: E402
from recranker.testing.backends import contract_requests  # noqa: E402


def test_grouped_attention_answers_bitwise_as_sdpa_without_copying_the_heads(tokenizer, monkeypatch) -> None:
    plain, grouped = tiny_causal_lm(tokenizer).eval(), tiny_causal_lm(tokenizer).eval()
    heads, kv_heads = plain.config.num_attention_heads, plain.config.num_key_value_heads
    assert heads > kv_heads  # grouped heads to share
    bench.use_grouped_attention(grouped)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query, key, value, **kwargs):  # (key heads, query length, masked, enable_gqa)
        calls.append((key.shape[1], query.shape[2], kwargs.get("attn_mask") is not None, kwargs.get("enable_gqa", False)))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    reqs = contract_requests()  # several groups and lengths: masked prefix and suffix passes, generation
    expected = TransformersBackend(plain, tokenizer, batch_tokens=48, prefix_tokens=80).run(reqs, ids)
    plain_calls = list(calls)
    calls.clear()
    got = TransformersBackend(grouped, tokenizer, batch_tokens=48, prefix_tokens=80).run(reqs, ids)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(b.logprobs, a.logprobs)
        assert b.text == a.text
    masked = lambda made: [c for c in made if c[2] and c[1] > 1]  # noqa: E731  multi-token passes under a mask
    assert masked(plain_calls) and all(c[0] == heads for c in masked(plain_calls))  # transformers copies the heads
    assert masked(calls) and all(c[0] == kv_heads and c[3] for c in masked(calls))  # the grouped kernel reads them


def test_each_row_is_set_against_the_peak_of_its_precision() -> None:
    for dtype in (torch.float32, "float32", "float32-grouped"):
        assert bench.peak_dtype(dtype) == torch.float32
    for dtype in (torch.bfloat16, "bfloat16", "bfloat16-mlp", "bfloat16-linears"):
        assert bench.peak_dtype(dtype) == torch.bfloat16


def test_profile_shares_sum_to_one_and_the_table_marks_operators_a_row_lacks(tokenizer, monkeypatch) -> None:
    model = tiny_causal_lm(tokenizer).eval()
    backend = TransformersBackend(model, tokenizer, batch_tokens=48, prefix_tokens=80)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "1", "5")]
    warm = []

    def ranking(backend, cfg, split, hints, candidates, **kwargs):  # the bench's rank, on the contract requests
        warm.append(kwargs.get("warm_up", True))
        return backend.run(contract_requests(), ids), 0.0

    monkeypatch.setattr(bench, "rank", ranking)
    shares = bench.profile_shares(backend, None, None, None, None, top=3)
    assert warm == [False]  # profiled without a second warm-up
    assert len(shares) == 4 and "other" in shares
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    top = [v for k, v in shares.items() if k != "other"]
    assert top == sorted(top, reverse=True) and top[0] > 0
    runs = {"row a": {"profile": {"aten::mm": 0.6, "aten::cat": 0.1, "other": 0.3}},
            "row b": {"profile": {"aten::mm": 0.2, "aten::add": 0.5, "other": 0.3}}, "row c": {}}
    table = bench.profile_table(runs)
    lines = [line for line in table.splitlines() if line.startswith("| `")]
    assert [line.split("|")[1].strip() for line in lines] == ["`aten::mm`", "`aten::add`", "`aten::cat`"]
    assert "| `aten::cat` | 10.0% | - |" in table and "row c" not in table
    assert bench.profile_table({"row": {}}) == ""


def test_the_fused_mlp_answers_as_the_unfused_one_and_refuses_blocks_it_cannot_reproduce(tokenizer) -> None:
    unfused, fused = tiny_causal_lm(tokenizer), tiny_causal_lm(tokenizer)
    bench.use_bf16_linears(unfused)
    assert bench.use_bf16_mlp(fused) == 3 * len(fused.model.layers)
    assert all(isinstance(layer.mlp, bench.BF16MLP) for layer in fused.model.layers)
    assert {p.dtype for name, p in fused.named_parameters() if ".mlp." not in name} == {torch.float32}
    ids = torch.tensor([tokenizer("A 1 B 5 Yes", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        a, b = unfused(input_ids=ids).logits, fused(input_ids=ids).logits
    assert b.dtype == torch.float32
    assert float((b - a).norm() / a.norm()) < 1e-3  # the same values but for the order of float32 sums

    class Ungated(torch.nn.Module):  # gate_proj, up_proj, down_proj and act_fn, but another block
        def __init__(self, mlp) -> None:
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj, self.act_fn = mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn

        def forward(self, x):
            return self.down_proj(self.gate_proj(x) + self.up_proj(x))

    model = tiny_causal_lm(tokenizer)
    layer = model.model.layers[0]
    layer.mlp = Ungated(layer.mlp)
    assert bench.use_bf16_mlp(model) == 3 * len(model.model.layers)
    assert isinstance(model.model.layers[0].mlp, Ungated)  # left unfused, its products rounded one by one
    assert isinstance(model.model.layers[0].mlp.gate_proj, bench.BF16Linear)
    assert isinstance(model.model.layers[1].mlp, bench.BF16MLP)
