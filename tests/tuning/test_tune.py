import json

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from recranker.testing import tiny_causal_lm
from recranker.tuning.config import AlroConfig, LoraConfig, TuningConfig
from recranker.tuning.data import encode_record
from recranker.tuning.tune import tune


@pytest.fixture(scope="module")
def examples(records, tokenizer):
    return [encode_record(r, tokenizer) for task in ("pointwise", "pairwise", "listwise") for r in records[task][:8]]


def settings(**changes) -> TuningConfig:
    base = {"max_steps": 4, "batch_size": 4, "logging_steps": 1, "save_steps": 2, "learning_rate": 5e-3,
            "warmup_ratio": 0.0}
    return TuningConfig(**{**base, **changes})


def run(tmp_path, tokenizer, examples, cfg, name="run"):
    model = tiny_causal_lm(tokenizer)
    summary = tune(cfg, tokenizer, model, examples, tmp_path / name, base_model="tiny", progress=False)
    return model, summary


def test_lora_changes_the_adapter_and_leaves_the_base_weights_alone(tmp_path, tokenizer, examples) -> None:
    before = {k: v.clone() for k, v in tiny_causal_lm(tokenizer).state_dict().items()}
    model, summary = run(tmp_path, tokenizer, examples, settings())
    lora = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert lora and any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in model.state_dict().items() if "lora_" not in k}
    assert set(before) <= set(base)
    assert all(torch.equal(before[k], base[k]) for k in before)
    assert 0 < summary["trainable_parameters"] < summary["total_parameters"]
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "run" / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_full_fine_tuning_changes_the_base_weights(tmp_path, tokenizer, examples) -> None:
    before = tiny_causal_lm(tokenizer).state_dict()
    model, _ = run(tmp_path, tokenizer, examples, settings(method="full", max_steps=2))
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)
    assert (tmp_path / "run" / "model" / "config.json").exists()


class Interrupt(TrainerCallback):
    """Stops the process-like run right after `step` (as Ctrl-C would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resuming_an_interrupted_run_gives_the_uninterrupted_result(tmp_path, tokenizer, examples, monkeypatch) -> None:
    cfg = settings(max_steps=6, save_steps=2, lora=LoraConfig(dropout=0.1))  # dropout: the RNG state matters too
    whole, _ = run(tmp_path, tokenizer, examples, cfg, "whole")
    from recranker.tuning import tune as tune_module

    original = tune_module.build_trainer

    def interrupted(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(Interrupt(3))
        return trainer

    monkeypatch.setattr(tune_module, "build_trainer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, tokenizer, examples, cfg, "parts")
    assert (tmp_path / "parts" / "checkpoints" / "checkpoint-2").exists()
    monkeypatch.setattr(tune_module, "build_trainer", original)
    resumed, summary = run(tmp_path, tokenizer, examples, cfg, "parts")
    assert summary["resumed_from"] == "checkpoint-2" and summary["steps"] == 6
    whole_state, resumed_state = whole.state_dict(), resumed.state_dict()
    for key, value in whole_state.items():
        assert torch.allclose(value, resumed_state[key], atol=1e-6), key
    assert any("lora_B" in k and whole_state[k].abs().sum() > 0 for k in whole_state)


def test_the_losses_go_down_on_a_toy_task(tmp_path, tokenizer, examples) -> None:
    listwise = [e for e in examples if "rank" in e][:4]
    cfg = settings(max_steps=60, batch_size=4, logging_steps=10, learning_rate=3e-3, save_steps=1000,
                   method="full", alro=AlroConfig(alpha=1.0, beta=1.0, gamma=10.0))
    run(tmp_path, tokenizer, listwise, cfg)
    log = [row for row in json.loads((tmp_path / "run" / "log.json").read_text()) if "loss" in row]
    first, last = log[0], log[-1]
    for term in ("loss", "sft", "rank", "perm"):
        assert last[term] < first[term], term


def test_the_log_gives_each_tasks_first_answer_token_loss(tmp_path, tokenizer, examples) -> None:
    chosen = [e for e in examples if e["task"] == "pointwise"][:3] + [e for e in examples if e["task"] == "pairwise"][:3]
    assert {e["task"] for e in chosen} == {"pointwise", "pairwise"}
    cfg = settings(max_steps=1, batch_size=len(chosen), logging_steps=1, learning_rate=1e-12, save_steps=1000,
                   mixed_precision="no", alro=AlroConfig(soft_lambda=False, permutation=False))
    model = tiny_causal_lm(tokenizer)  # seeded: the model `run` tunes
    expected = {}
    with torch.no_grad():  # the untrained model's loss of each answer's first token, by hand
        for e in chosen:
            ids = torch.tensor([e["input_ids"]])
            logits = model(input_ids=ids).logits[0, e["answer_start"] - 1]
            loss = torch.nn.functional.cross_entropy(logits[None], ids[0, e["answer_start"]][None]).item()
            expected.setdefault(e["task"], []).append(loss)
    run(tmp_path, tokenizer, chosen, cfg)
    row = next(r for r in json.loads((tmp_path / "run" / "log.json").read_text()) if "loss" in r)
    for task, losses in expected.items():
        assert row[f"first_{task}"] == pytest.approx(np.mean(losses), rel=1e-3), task
    assert "first_listwise" not in row


def test_alro_switches_decide_which_terms_are_trained(tmp_path, tokenizer, examples) -> None:
    for alro, terms in ((AlroConfig(permutation=False), {"sft", "rank"}), (AlroConfig(soft_lambda=False), {"sft", "perm"}),
                        (AlroConfig(soft_lambda=False, permutation=False), {"sft"})):
        name = f"{alro.soft_lambda}-{alro.permutation}"
        run(tmp_path, tokenizer, examples, settings(max_steps=3, alro=alro, batch_size=24), name)
        rows = [r for r in json.loads((tmp_path / name / "log.json").read_text()) if "loss" in r]
        assert {"sft", "rank", "perm"} & set(rows[0]) == terms


def test_merged_export_gives_the_adapted_models_logits(tmp_path, tokenizer, examples) -> None:
    from transformers import AutoModelForCausalLM

    model, _ = run(tmp_path, tokenizer, examples, settings(max_steps=2, merge=True))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "merged").eval()
    ids = torch.tensor([examples[0]["input_ids"]])
    base = tiny_causal_lm(tokenizer)
    assert torch.allclose(merged(ids).logits, model.eval()(ids).logits, atol=1e-5)
    assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-5)


def test_bf16_mixed_precision_trains_float32_weights_under_autocast(tmp_path, tokenizer, examples) -> None:
    seen = []
    model = tiny_causal_lm(tokenizer)
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    summary = tune(settings(mixed_precision="bf16"), tokenizer, model, examples, tmp_path / "bf16", base_model="tiny",
                   progress=False)
    assert torch.bfloat16 in seen  # the matrix products ran in bfloat16
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    layer = model.model.layers[0].mlp.down_proj  # now peft's LoRA layer around the base layer
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, layer.in_features)).dtype == torch.float32  # the update is not rounded away
    _, plain = run(tmp_path, tokenizer, examples, settings(mixed_precision="no"))
    assert seen and abs(summary["train_loss"] - plain["train_loss"]) < 0.05 * plain["train_loss"]


def test_auto_mixed_precision_follows_the_device(monkeypatch) -> None:
    from recranker.tuning import model as model_module

    monkeypatch.setattr(model_module, "native_bf16", lambda device="cpu": True)
    assert model_module.mixed_precision(settings()) == "bf16"
    assert model_module.mixed_precision(settings(mixed_precision="no")) == "no"
    monkeypatch.setattr(model_module, "native_bf16", lambda device="cpu": False)
    assert model_module.mixed_precision(settings()) == "no"
    assert model_module.mixed_precision(settings(mixed_precision="bf16")) == "bf16"


def test_native_bf16_reads_the_cpu_flags(tmp_path) -> None:
    from recranker.tuning.model import native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert native_bf16("cpu", str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")  # bf16 only emulated
    assert not native_bf16("cpu", str(info))
    assert not native_bf16("cpu", str(tmp_path / "missing"))


def test_cpu_flags_reads_the_first_flags_line(tmp_path) -> None:
    from recranker.tuning.model import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()
