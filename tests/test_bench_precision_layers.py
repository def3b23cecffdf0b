"""bench/precision_layers.py: SmoothQuant's rescaling leaves the float32 model's answers as they were
(it only moves scale between the norm and the weights), and the int8 modes quantise exactly the
MLP products they name."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import precision_layers as bench  # noqa: E402

from recranker.ranking.backend import OneDNNLinear  # noqa: E402
from recranker.testing import tiny_causal_lm  # noqa: E402


def _prompts(tokenizer) -> list[list[int]]:
    texts = ["Rate the movie A 5", "Would the user prefer B over A", "Rank 1 5 A B"]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_smoothing_is_exact_in_float32_and_moves_scale_into_the_weights(tokenizer) -> None:
    model = tiny_causal_lm(tokenizer).eval()
    ids = _prompts(tokenizer)
    absmax = bench.input_absmax(model, ids)
    assert len(absmax) == len(model.model.layers)
    assert all(m.shape == (model.config.hidden_size,) and bool((m > 0).all()) for m in absmax)
    with torch.inference_mode():
        before = [model(input_ids=torch.tensor([row])).logits for row in ids]
    norm_before = model.model.layers[0].post_attention_layernorm.weight.clone()
    gate_before = model.model.layers[0].mlp.gate_proj.weight.clone()
    bench.smooth_gate_up(model, absmax)
    assert not torch.allclose(model.model.layers[0].post_attention_layernorm.weight, norm_before)
    assert not torch.allclose(model.model.layers[0].mlp.gate_proj.weight, gate_before)
    with torch.inference_mode():
        after = [model(input_ids=torch.tensor([row])).logits for row in ids]
    for a, b in zip(before, after):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_calibration_recorded_during_the_float32_pass_equals_its_own_pass(tokenizer) -> None:
    base = tiny_causal_lm(tokenizer).eval()
    ids = _prompts(tokenizer)
    own = bench.input_absmax(base, ids)
    model, context = bench.prepared(base, "fp32")
    with bench.recording_absmax(model) as seen:
        hidden, logits, _ = bench.forward(model, context, ids)
    assert len(hidden) == len(logits) == len(ids)
    for a, b in zip(seen, own):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not model.model.layers[0].post_attention_layernorm._forward_hooks  # the hooks are gone


def test_int8_modes_quantise_only_the_products_they_name(tokenizer) -> None:
    base = tiny_causal_lm(tokenizer).eval()
    ids = _prompts(tokenizer)
    absmax = bench.input_absmax(base, ids)
    expected = {"int8-mlp": {"gate_proj", "up_proj", "down_proj"}, "int8-gateup": {"gate_proj", "up_proj"},
                "int8-gateup-sq": {"gate_proj", "up_proj"}}
    for mode, names in expected.items():
        model, _ = bench.prepared(base, mode, absmax)
        quantised = [name for name, m in model.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
        assert {name.rsplit(".", 1)[-1] for name in quantised} == names, mode
        assert len(quantised) == len(names) * len(base.model.layers), mode
        assert isinstance(model.model.layers[0].self_attn.q_proj, (OneDNNLinear, torch.nn.Linear))  # float32
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids[0]])).logits
        assert torch.isfinite(logits).all()
    assert type(base.model.layers[0].mlp.gate_proj) is torch.nn.Linear  # the float32 model is left as it was
    try:
        bench.prepared(base, "int8-gateup-sq")
    except ValueError as err:
        assert "input_absmax" in str(err)
    else:
        raise AssertionError("int8-gateup-sq without the calibration maxima must fail")
